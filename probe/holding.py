"""What ``gpu-requests`` handed the controller and the controller has not yet acknowledged (docs/gpu-request.md,
"Hand-over").

A drop box's entry is the user's file in a world-writable sticky directory. Once judged, an accepted entry is
written here as a root-owned file of the parsed entry (uid, passwd name, ctime, body) under a fresh handle, and
only then is the user's file removed. Every ``gpu-requests`` answer serves what is held again, with its handle,
until ``gpu-requests-done`` names the handle: a controller killed between reading and committing loses nothing,
and whichever controller reads next files it (a replayed operation changes nothing: control.queue.replays).

The place is its own directory beside the box, never inside it (a user could pre-create a name there): root's,
not a symlink, mode 0700, made by the first call when missing and refused whole otherwise. Each call holds an
exclusive ``flock`` on it, so two calls (a failover's two controllers) never serve or write at once, and a
temporary file found under the lock is a crashed call's, removed. A held entry is written to a temporary name,
fsynced, renamed and the directory fsynced before the box file goes: a node that crashes in between serves the
entry twice, under two handles, and the controller's (user, nonce) key files it once.

A handle is the entry's ctime (10 digits) and 16 random hex digits, so the names sort in filing order. An entry
older than ``MAX_HELD_AGE_S`` by that ctime is reported (``held_expired``) and dropped: an operation a day old
is more likely stale than wanted, and a node must not keep one forever for a controller that never comes back.
"""

import binascii
import collections
import errno
import fcntl
import json
import os
import re
import stat

from probe import atomicfile
from probe.dropbox import Rejected
from probe.errors import Failed, Refused

PLACE_MODE = 0o700
MAX_HELD_AGE_S = 86400
MAX_HELD_BYTES = 8192
HANDLE = re.compile(r"[0-9]{10}-[0-9a-f]{16}\Z")
_TEMPORARY = re.compile(r"\.[0-9]{10}-[0-9a-f]{16}\.tmp\Z")
_KEYS = {"uid", "user", "ctime", "request"}

Held = collections.namedtuple("Held", "handle uid user ctime value")
Held.__doc__ = "A held entry: its handle, and the drop box's ``Accepted`` fields it was made from."


def place_problem(st):
    """Why the place, opened with ``O_DIRECTORY|O_NOFOLLOW`` and ``fstat``-ed, must not be trusted, or None."""
    if st.st_uid != 0:
        return "is owned by uid %d, not root" % st.st_uid
    if stat.S_IMODE(st.st_mode) != PLACE_MODE:
        return "has mode %04o, not %04o" % (stat.S_IMODE(st.st_mode), PLACE_MODE)
    return None


def _open_place(path):
    try:
        os.mkdir(path, PLACE_MODE)  # the umask can only take bits away from 0700; the check below says if it did
    except FileExistsError:
        pass
    except OSError as error:
        raise Failed("hold_unusable", "%s: %s" % (path, error.strerror)) from None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENOTDIR):
            what = "is a symlink" if os.path.islink(path) else "is not a directory"
            raise Refused("unsafe_hold", "%s %s" % (path, what)) from None
        raise Failed("hold_unusable", "%s: %s" % (path, error.strerror)) from None
    problem = place_problem(os.fstat(fd))
    if problem is not None:
        os.close(fd)
        raise Refused("unsafe_hold", "%s %s" % (path, problem))
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


class Place:
    """The holding place at ``path``, opened, checked and locked for a ``with`` block. ``problem_of(body)``
    checks a held body again as the box checked it (a held file is root's, but it is read back from disk)."""

    def __init__(self, path, problem_of):
        self.path = path
        self._problem_of = problem_of
        self._fd = None

    def __enter__(self):
        self._fd = _open_place(self.path)
        return self

    def __exit__(self, *exc):
        os.close(self._fd)  # closing the descriptor releases the lock
        return False

    def served(self, now, limit):
        """``(held, dropped, more)``: the held entries in filing order and the ones dropped (expired or corrupt, as
        ``Rejected``), at most ``limit`` together; ``more`` when held entries were left for the next call."""
        names = self._names()
        held, dropped = [], []
        for name in names:
            if len(held) + len(dropped) >= limit:
                return held, dropped, True
            entry = self._read(name)
            if isinstance(entry, Held) and now - entry.ctime > MAX_HELD_AGE_S:
                entry = Rejected("held_expired", entry.uid, "filed at %d, not acknowledged within %d s"
                                 % (entry.ctime, MAX_HELD_AGE_S))
            if isinstance(entry, Rejected):
                self._unlink(name)
                dropped.append(entry)
            else:
                held.append(entry)
        return held, dropped, False

    def hold(self, entries):
        """``probe.dropbox.collect``'s ``keep``: each ``Accepted`` entry written here and returned as ``Held``
        (the rest as they are), every file durable before the box removes any."""
        kept = [self._write(entry) if not isinstance(entry, Rejected) else entry for entry in entries]
        if any(isinstance(entry, Held) for entry in kept):  # the renames durable before the box removes anything
            try:
                os.fsync(self._fd)
            except OSError as error:
                raise Failed("hold_unusable", "%s: %s" % (self.path, error.strerror)) from None
        return kept

    def release(self, handles):
        """Remove the held entries ``handles`` name: ``(removed, unknown)`` counts (an unknown handle was removed
        already, by an earlier acknowledgement or as expired, and is harmless)."""
        removed = 0
        for handle in handles:
            removed += self._unlink(handle)
        if removed:
            os.fsync(self._fd)
        return removed, len(handles) - removed

    def _names(self):
        names = []
        for name in sorted(os.listdir(self._fd)):
            if HANDLE.match(name):
                names.append(name)
            elif _TEMPORARY.match(name):
                self._unlink(name)  # under the lock nobody is writing it: a crashed call's
        return names

    def _unlink(self, name):
        try:
            os.unlink(name, dir_fd=self._fd)
        except FileNotFoundError:
            return False
        except OSError as error:
            raise Failed("hold_unusable", "%s/%s: %s" % (self.path, name, error.strerror)) from None
        return True

    def _write(self, entry):
        handle = "%010d-%s" % (entry.ctime, binascii.hexlify(os.urandom(8)).decode("ascii"))
        data = json.dumps({"uid": entry.uid, "user": entry.user, "ctime": entry.ctime, "request": entry.value},
                          separators=(",", ":")).encode("utf-8")
        temporary = ".%s.tmp" % handle
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=self._fd)
            try:
                atomicfile.write_all(fd, data)
            finally:
                os.close(fd)
            os.rename(temporary, handle, src_dir_fd=self._fd, dst_dir_fd=self._fd)
        except OSError as error:
            self._unlink(temporary)
            raise Failed("hold_unusable", "%s/%s: %s" % (self.path, handle, error.strerror)) from None
        return Held(handle, entry.uid, entry.user, entry.ctime, entry.value)

    def _read(self, name):
        """The ``Held`` entry, or a ``Rejected`` one (``held_corrupt``) when it is not what ``_write`` writes."""
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=self._fd)
        except OSError as error:
            return Rejected("held_corrupt", None, error.strerror)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != 0:
                return Rejected("held_corrupt", None, "not a regular file of root's")
            raw = os.read(fd, MAX_HELD_BYTES + 1)
        finally:
            os.close(fd)
        try:
            document = json.loads(raw.decode("utf-8"))
        except ValueError as error:
            return Rejected("held_corrupt", None, str(error)[:200])
        problem = self._document_problem(document, name)
        if problem is not None:
            uid = document.get("uid") if isinstance(document, dict) else None
            return Rejected("held_corrupt", uid if _is_uid(uid) else None, problem)
        return Held(name, document["uid"], document["user"], document["ctime"], document["request"])

    def _document_problem(self, document, name):
        if not isinstance(document, dict) or set(document) != _KEYS:
            return "must be an object of exactly %s" % " ".join(sorted(_KEYS))
        if not _is_uid(document["uid"]) or not isinstance(document["user"], str) or not document["user"]:
            return "uid or user is not an account"
        ctime = document["ctime"]
        if not isinstance(ctime, int) or isinstance(ctime, bool) or "%010d" % ctime != name[:10]:
            return "ctime does not match the handle"
        return self._problem_of(document["request"])


def _is_uid(value):
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 4294967294
