"""Enforcement as data: a plan is a list of steps (or none, with the reason it is a no-op), and
``execute`` is the one place where the OS errors of carrying it out become ``Failed``.
"""

import collections
import errno
import os

from probe import atomicfile
from probe.errors import Failed

MakeDir = collections.namedtuple("MakeDir", "path")
Rename = collections.namedtuple("Rename", "source target")
WriteFile = collections.namedtuple("WriteFile", "path text tolerate")
WriteFile.__new__.__defaults__ = ((),)
DrainAndRemove = collections.namedtuple("DrainAndRemove", "group target_procs")
Drain = collections.namedtuple("Drain", "group target_procs")
Drain.__doc__ = "Move every process of ``group`` to ``target_procs`` until none is left; the group stays."
Run = collections.namedtuple("Run", "argv")
Record = collections.namedtuple("Record", "directory name text")
Record.__doc__ = "Replace the root-owned file ``directory/name`` with ``text`` atomically, or remove it (None)."

Ops = collections.namedtuple("Ops", "mkdir rmdir")
Ops.__doc__ = "The directory operations a plan uses; tests of fixture cgroup trees pass ones that mimic cgroupfs."
REAL_OPS = Ops(os.mkdir, os.rmdir)

Plan = collections.namedtuple("Plan", "steps reason")
Plan.__doc__ = "Steps to reach the desired state; when ``steps`` is empty, ``reason`` says why nothing is needed."

SAFE_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
RUN_TIMEOUT_SECONDS = 60
DRAIN_ATTEMPTS = 20


def describe(step):
    """One human-readable line per step, for the command's ``actions`` list."""
    if isinstance(step, MakeDir):
        return "mkdir %s" % step.path
    if isinstance(step, Rename):
        return "rename %s -> %s" % (step.source, step.target)
    if isinstance(step, WriteFile):
        return "write %r > %s" % (step.text, step.path)
    if isinstance(step, DrainAndRemove):
        return "move processes of %s to %s; rmdir %s" % (step.group, step.target_procs, step.group)
    if isinstance(step, Drain):
        return "move processes of %s to %s" % (step.group, step.target_procs)
    if isinstance(step, Record):
        what = "remove" if step.text is None else "record %r in" % step.text
        return "%s %s/%s" % (what, step.directory, step.name)
    return "run %s" % " ".join(step.argv)


def run_argv(argv):
    """Run ``argv`` without a shell and return its stdout; a failure raises ``Failed`` with its stderr."""
    import subprocess  # only enforcement runs commands; the sample path never pays for this import

    try:
        done = subprocess.run(
            argv, env=SAFE_ENV, stdin=subprocess.DEVNULL, capture_output=True, timeout=RUN_TIMEOUT_SECONDS
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise Failed("command_failed", "%s: %s" % (argv[0], error)) from None
    if done.returncode != 0:
        stderr = done.stderr.decode("utf-8", "replace").strip()
        raise Failed("command_failed", "%s exited %d: %s" % (" ".join(argv), done.returncode, stderr[:500]))
    return done.stdout.decode("utf-8", "replace")


def _write(path, text, tolerate=()):
    # Kernel control files take one value per write(2); open without O_CREAT so a typo cannot create files.
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW)
    try:
        os.write(fd, text.encode("ascii"))
    except OSError as error:
        if errno.errorcode.get(error.errno) not in tolerate:
            raise
    finally:
        os.close(fd)


def _move_all(group, target_procs):
    """Move the processes ``group`` holds now; how many there were, or None when the group is gone."""
    try:
        with open(group + "/cgroup.procs") as handle:
            pids = handle.read().split()
    except FileNotFoundError:
        return None
    for pid in pids:
        _write(target_procs, pid, tolerate=("ESRCH",))
    return len(pids)


def _drain(group, target_procs):
    # A process may fork between the read and the moves: read again until a read finds the group empty.
    for _ in range(DRAIN_ATTEMPTS):
        if not _move_all(group, target_procs):
            return
    raise OSError(errno.EBUSY, "processes keep appearing in the group", group)


def _drain_and_remove(group, target_procs, ops):
    for _ in range(DRAIN_ATTEMPTS):
        if _move_all(group, target_procs) is None:
            return
        try:
            ops.rmdir(group)
            return
        except OSError as error:
            if error.errno != errno.EBUSY:
                raise
    raise OSError(errno.EBUSY, "processes keep appearing in the group", group)


def _apply(step, ops):
    if isinstance(step, MakeDir):
        try:
            ops.mkdir(step.path, 0o755)
        except FileExistsError:
            pass
    elif isinstance(step, Rename):
        os.rename(step.source, step.target)
    elif isinstance(step, WriteFile):
        _write(step.path, step.text, step.tolerate)
    elif isinstance(step, DrainAndRemove):
        _drain_and_remove(step.group, step.target_procs, ops)
    elif isinstance(step, Drain):
        _drain(step.group, step.target_procs)
    elif isinstance(step, Record):
        if step.text is None:
            atomicfile.remove(step.directory, step.name)
        else:
            atomicfile.replace(step.directory, step.name, step.text.encode("ascii"))
    else:
        run_argv(step.argv)


def execute(plan, ops=REAL_OPS):
    """Carry out every step in order; the first OS error stops the plan and becomes ``Failed``."""
    done = []
    for step in plan.steps:
        try:
            _apply(step, ops)
        except OSError as error:
            raise Failed(
                "os_error", "%s: %s (after %d of %d steps)" % (describe(step), error, len(done), len(plan.steps))
            ) from None
        done.append(describe(step))
    return done
