"""Kill one process, only while (boot_id, pid, start_ticks, uid) still identify it.

With a pidfd (Python 3.9+, Linux 5.3+) the identity is verified once and every signal goes to exactly
that process, whatever happens to the pid afterwards. Without one (Python 3.8) the identity is
re-verified immediately before each signal, which leaves a window of microseconds instead of seconds.
"""

import collections
import os
import select
import signal
import time

from probe import processes

KILL_CONFIRM_SECONDS = 10
# Python 3.9+ only; looked up once so 3.8 nodes take the /proc path.
_PIDFD_OPEN = getattr(os, "pidfd_open", None)
_PIDFD_SEND_SIGNAL = getattr(signal, "pidfd_send_signal", None)
POLL_SECONDS = 0.05

Target = collections.namedtuple("Target", "boot_id pid start_ticks uid")
KillResult = collections.namedtuple("KillResult", "outcome signals waited_ms detail")
KillResult.__doc__ = "``outcome`` is killed, exited, stale_target or unkillable (docs/node-command.md)."


def _identity_problem(target, identity):
    """Why ``identity`` (from /proc now) is not ``target``: None if it is, "gone" if nothing lives there."""
    if identity is None or identity[2] in ("Z", "X"):
        return "gone"
    start_ticks, uid, _ = identity
    if start_ticks != target.start_ticks:
        return "start_ticks is %d, not %d" % (start_ticks, target.start_ticks)
    if uid != target.uid:
        return "uid is %d, not %d" % (uid, target.uid)
    return None


class _PidfdHandle:
    def __init__(self, fd):
        self.fd = fd

    def gone(self):
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        return bool(poller.poll(0))

    def send(self, signum):
        try:
            _PIDFD_SEND_SIGNAL(self.fd, signum)
        except ProcessLookupError:
            return False
        return True

    def wait(self, seconds):
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        return bool(poller.poll(int(seconds * 1000)))

    def close(self):
        os.close(self.fd)


class _ProcHandle:
    def __init__(self, target, proc_root):
        self.target = target
        self.proc_root = proc_root

    def gone(self):
        return _identity_problem(self.target, processes.read_identity(self.proc_root, self.target.pid)) is not None

    def send(self, signum):
        if self.gone():
            return False
        try:
            os.kill(self.target.pid, signum)
        except ProcessLookupError:
            return False
        return True

    def wait(self, seconds):
        deadline = time.monotonic() + seconds
        while not self.gone():
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_SECONDS)
        return True

    def close(self):
        pass


def _open(target, proc_root):
    if _PIDFD_OPEN is None or _PIDFD_SEND_SIGNAL is None:
        return _ProcHandle(target, proc_root)
    try:
        return _PidfdHandle(_PIDFD_OPEN(target.pid))
    except ProcessLookupError:
        return None
    except OSError:
        # ENOSYS on kernels before 5.3.
        return _ProcHandle(target, proc_root)


def kill(target, boot_id, proc_root, grace_seconds):
    """SIGTERM, up to ``grace_seconds``, SIGKILL, up to ``KILL_CONFIRM_SECONDS``; returns a ``KillResult``."""
    started = time.monotonic()

    def result(outcome, signals, detail=""):
        return KillResult(outcome, signals, int((time.monotonic() - started) * 1000), detail)

    if boot_id != target.boot_id:
        return result("stale_target", [], "boot_id is %s" % boot_id)
    handle = _open(target, proc_root)
    if handle is None:
        return result("exited", [], "no such process")
    try:
        problem = _identity_problem(target, processes.read_identity(proc_root, target.pid))
        if problem == "gone" or (problem is None and handle.gone()):
            return result("exited", [], "no such process")
        if problem is not None:
            return result("stale_target", [], problem)
        if not handle.send(signal.SIGTERM):
            return result("exited", [], "exited before SIGTERM")
        if handle.wait(grace_seconds):
            return result("killed", ["TERM"])
        if not handle.send(signal.SIGKILL):
            return result("killed", ["TERM"])
        if handle.wait(KILL_CONFIRM_SECONDS):
            return result("killed", ["TERM", "KILL"])
        return result("unkillable", ["TERM", "KILL"], "still present %d s after SIGKILL" % KILL_CONFIRM_SECONDS)
    finally:
        handle.close()
