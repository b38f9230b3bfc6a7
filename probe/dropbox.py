"""A root-owned sticky drop box: files users create, whose owner uid (set by the kernel) is their identity.

Two verbs read one each: ``login-codes`` (docs/web-login.md) and ``gpu-requests`` (docs/gpu-request.md). A user
controls everything about their file except its owner and its ctime, so every check below exists:

* a symlink or a hard link (``st_nlink != 1``) could make a file of someone else's read as the user's, or the
  user's content read under another owner; symlinks are refused at ``lstat`` and again by ``O_NOFOLLOW`` at
  open (the name may be swapped between the two), hard links by ``fstat`` of the opened descriptor;
* anything but a regular file is never read (a FIFO would block: ``O_NONBLOCK``; a device is not ours);
* a file writable by group or others could hold content another user wrote into it, under this owner's uid;
* uid 0, system uids below ``UID_MIN`` and ``nobody`` are never a billing identity;
* more than the box's byte limit is garbage; older than its age limit (by ctime) is stale; what the content
  must be is the box's own ``parse`` function.

The directory itself must be root's, not a symlink and mode 1733 (anyone may create, nobody but root may list,
the sticky bit keeps users from removing or renaming each other's files); otherwise nothing is read, since
any check above means nothing in a directory someone else controls. ``judge`` is the pure decision over an
entry's facts; ``collect`` gathers them through one directory descriptor and removes every entry it saw (after
its ``keep``, when given, has made the accepted ones its own: ``gpu-requests`` holds them, probe/holding.py).
"""

import collections
import errno
import os
import pwd
import stat
import time

from probe.constants import NOBODY_UID
from probe.errors import Failed, Refused

BOX_MODE = 0o1733

Box = collections.namedtuple("Box", "max_bytes max_age_s max_entries parse")
Box.__doc__ = """One kind of drop box: the byte and age limits, the most entries read per call (the rest wait
for the next), and ``parse(content) -> (reason, detail, value)``: a refusal reason, or None and the value."""

Facts = collections.namedtuple("Facts", "mode nlink uid size ctime content")
Facts.__doc__ = "What ``fstat`` and a bounded read of one opened entry say (content: bytes or None)."

Accepted = collections.namedtuple("Accepted", "uid user ctime value")
Accepted.__doc__ = "An entry that passed: its owner (uid and passwd name), ctime in whole seconds, parsed value."

Rejected = collections.namedtuple("Rejected", "reason uid detail")
Rejected.__doc__ = "An entry refused and removed: the reason, the owner uid where known (else None), a detail."


def box_problem(st):
    """Why the box, opened with ``O_DIRECTORY|O_NOFOLLOW`` (so neither a symlink nor a file) and ``fstat``-ed,
    must not be trusted, or None."""
    if st.st_uid != 0:
        return "is owned by uid %d, not root" % st.st_uid
    if stat.S_IMODE(st.st_mode) != BOX_MODE:
        return "has mode %04o, not %04o" % (stat.S_IMODE(st.st_mode), BOX_MODE)
    return None


def judge(box, facts, now, uid_min):
    """``(reason, detail, None)`` for an entry to refuse, or ``(None, "", value)`` for one to pass on. The reason
    names the check; only ``parse`` adds a detail (what is wrong with the content)."""
    if not stat.S_ISREG(facts.mode):
        return "not_regular_file", "", None
    if facts.nlink != 1:
        return "hard_link", "", None
    if facts.uid == 0 or facts.uid < uid_min or facts.uid == NOBODY_UID:
        return "system_user", "", None
    if facts.mode & (stat.S_IWGRP | stat.S_IWOTH):
        return "writable_by_others", "", None
    if facts.size > box.max_bytes or facts.content is None or len(facts.content) > box.max_bytes:
        return "oversize", "", None
    if now - facts.ctime > box.max_age_s:
        return "expired", "", None
    reason, detail, value = box.parse(facts.content)
    if reason is not None:
        return reason, detail, None
    return None, "", value


def _read_entry(dir_fd, name, max_bytes):
    """The entry's ``Facts``, or a ``Rejected`` when it cannot even be opened as a plain file (with the owner
    ``lstat`` saw: the kernel set it for a symlink or a FIFO too)."""
    before = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if stat.S_ISLNK(before.st_mode):
        return Rejected("symlink", before.st_uid, "")
    if not stat.S_ISREG(before.st_mode):
        return Rejected("not_regular_file", before.st_uid, "")
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as error:
        if error.errno == errno.ELOOP:  # swapped for a symlink after the lstat: whose, nobody can say
            return Rejected("symlink", None, "")
        raise
    try:
        st = os.fstat(fd)
        content = os.read(fd, max_bytes + 1) if stat.S_ISREG(st.st_mode) else None
    finally:
        os.close(fd)
    return Facts(st.st_mode, st.st_nlink, st.st_uid, st.st_size, st.st_ctime, content)


def _remove(dir_fd, name):
    try:
        os.unlink(name, dir_fd=dir_fd)
    except IsADirectoryError:
        try:
            os.rmdir(name, dir_fd=dir_fd)
        except OSError:
            pass  # a non-empty directory a user made stays; it is refused again each call, and holds nothing
    except FileNotFoundError:
        pass


def _entry(box, dir_fd, name, now, uid_min):
    facts = _read_entry(dir_fd, name, box.max_bytes)
    if isinstance(facts, Rejected):
        return facts
    reason, detail, value = judge(box, facts, now, uid_min)
    if reason is not None:
        return Rejected(reason, facts.uid, detail)
    try:
        user = pwd.getpwuid(facts.uid).pw_name
    except KeyError:
        return Rejected("unknown_uid", facts.uid, "no passwd entry")
    # ctime, not mtime: a user can set their file's mtime (touch -d), only the kernel sets its ctime.
    return Accepted(facts.uid, user, int(facts.ctime), value)


def collect(box, directory, uid_min, now=None, keep=None):
    """Every entry of the box at ``directory`` judged, then removed: ``(entries, more_left)``, each entry an
    ``Accepted`` or a ``Rejected``, at most ``box.max_entries``. ``keep(entries)``, when given, runs after the
    judging and before any removal, and its return value is the entries returned: if it raises, nothing is
    removed, so nothing a user filed is lost to a failure to keep it.

    A missing box is ``None`` (the role has not run yet); an untrusted one raises ``Refused``; any other OS
    error raises ``Failed`` (the controller retries).
    """
    now = time.time() if now is None else now
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None, False
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENOTDIR):
            # Linux answers ENOTDIR for a symlink under O_DIRECTORY|O_NOFOLLOW; lstat says which it is.
            what = "is a symlink" if os.path.islink(directory) else "is not a directory"
            raise Refused("unsafe_spool", "%s %s" % (directory, what)) from None
        raise Failed("spool_unreadable", "%s: %s" % (directory, error.strerror)) from None
    try:
        problem = box_problem(os.fstat(dir_fd))
        if problem is not None:
            raise Refused("unsafe_spool", "%s %s" % (directory, problem))
        listed = sorted(os.listdir(dir_fd))
        names = listed[: box.max_entries]
        entries = []
        # Every entry is judged before any is removed: removing one name of a hard-linked file first would
        # leave the other with st_nlink 1.
        for name in names:
            try:
                entries.append(_entry(box, dir_fd, name, now, uid_min))
            except FileNotFoundError:
                continue  # removed meanwhile (a second controller's call): nothing to report
            except OSError as error:
                entries.append(Rejected("unreadable", None, error.strerror))
        if keep is not None:
            entries = keep(entries)
        for name in names:
            _remove(dir_fd, name)
        return entries, len(listed) > box.max_entries
    except OSError as error:
        raise Failed("spool_unreadable", "%s: %s" % (directory, error.strerror)) from None
    finally:
        os.close(dir_fd)


def names_in(*directories):
    """How many names the directories hold together (a missing one: none), or None when one cannot be listed:
    for the sample, so the controller asks for a box's files only where there are some. Counted, never opened:
    what a file is, is ``collect``'s to decide."""
    count = 0
    for directory in directories:
        try:
            count += len(os.listdir(directory))
        except FileNotFoundError:
            continue
        except OSError:
            return None
    return count
