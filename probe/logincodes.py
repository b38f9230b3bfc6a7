"""``login-codes``: read and remove the web-login codes users dropped into the spool (docs/web-login.md).

A user proves who they are to the console by running ``gpuledger-balance --web CODE`` on a node: it creates
a file in the root-owned sticky spool directory holding the code the console showed. The kernel vouches for
the file's owner uid, which is the identity the controller receives; nothing typed into the file names a user.
Every check below exists because a user controls everything about their file except its owner and its ctime:

* a symlink or a hard link (``st_nlink != 1``) could make a file of someone else's read as the user's, or the
  user's code read under another owner; symlinks are refused at ``lstat`` and again by ``O_NOFOLLOW`` at open
  (the name may be swapped between the two), hard links by ``fstat`` of the opened descriptor;
* anything but a regular file is never read (a FIFO would block: ``O_NONBLOCK``; a device is not ours);
* a file writable by group or others could hold a code another user wrote into it, under this owner's uid;
* uid 0, system uids below ``UID_MIN`` and ``nobody`` are never a billing identity;
* more than ``MAX_BYTES``, or content not of the code's shape, is garbage; older than ``MAX_AGE_S`` is stale.

The spool itself must be root's, not a symlink and mode 1733 (anyone may create, nobody but root may list,
the sticky bit keeps users from removing or renaming each other's files); otherwise nothing is read, since
any check above means nothing in a directory someone else controls. ``judge`` is the pure decision over an
entry's facts; ``collect`` gathers them through one directory descriptor and removes every entry it saw.
"""

import collections
import errno
import os
import pwd
import re
import stat
import time

from probe.constants import NOBODY_UID
from probe.errors import Failed, Refused
from probe.verbs import ok

# The console's code: 8 characters of the 32-letter alphabet without 0, 1, I and O (40 bits); the hook writes
# it normalized (upper case, no dash). control.weblogin.ALPHABET is the same alphabet (a test compares them).
CODE_SHAPE = re.compile(rb"([2-9A-HJ-NP-Z]{8})\n?\Z")
MAX_BYTES = 64
MAX_AGE_S = 600
# A node with many abandoned entries answers in bounded output; the rest are read at the next call.
MAX_ENTRIES = 200
SPOOL_MODE = 0o1733

Facts = collections.namedtuple("Facts", "mode nlink uid size ctime content")
Facts.__doc__ = "What ``fstat`` and a bounded read of one opened spool entry say (content: bytes or None)."


def spool_problem(st):
    """Why the spool, opened with ``O_DIRECTORY|O_NOFOLLOW`` (so neither a symlink nor a file) and ``fstat``-ed,
    must not be trusted, or None."""
    if st.st_uid != 0:
        return "is owned by uid %d, not root" % st.st_uid
    if stat.S_IMODE(st.st_mode) != SPOOL_MODE:
        return "has mode %04o, not %04o" % (stat.S_IMODE(st.st_mode), SPOOL_MODE)
    return None


def judge(facts, now, uid_min):
    """``(reason, None)`` for an entry to refuse, or ``(None, code)`` for one to pass on with its owner's uid."""
    if not stat.S_ISREG(facts.mode):
        return "not_regular_file", None
    if facts.nlink != 1:
        return "hard_link", None
    if facts.uid == 0 or facts.uid < uid_min or facts.uid == NOBODY_UID:
        return "system_user", None
    if facts.mode & (stat.S_IWGRP | stat.S_IWOTH):
        return "writable_by_others", None
    if facts.size > MAX_BYTES or facts.content is None or len(facts.content) > MAX_BYTES:
        return "oversize", None
    if now - facts.ctime > MAX_AGE_S:
        return "expired", None
    match = CODE_SHAPE.match(facts.content)
    if match is None:
        return "bad_code", None
    return None, match.group(1).decode("ascii")


def _read_entry(dir_fd, name):
    """The entry's ``Facts``, or a refusal reason when it cannot even be opened as a plain file."""
    before = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if stat.S_ISLNK(before.st_mode):
        return "symlink"
    if not stat.S_ISREG(before.st_mode):
        return "not_regular_file"
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as error:
        if error.errno == errno.ELOOP:  # swapped for a symlink after the lstat
            return "symlink"
        raise
    try:
        st = os.fstat(fd)
        content = os.read(fd, MAX_BYTES + 1) if stat.S_ISREG(st.st_mode) else None
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
            pass  # a non-empty directory a user made stays; it is refused again each call, and holds no code
    except FileNotFoundError:
        pass


def _entry(dir_fd, name, now, uid_min):
    facts = _read_entry(dir_fd, name)
    if isinstance(facts, str):
        return {"refused": facts}
    reason, code = judge(facts, now, uid_min)
    if reason is not None:
        return {"refused": reason, "uid": facts.uid}
    try:
        user = pwd.getpwuid(facts.uid).pw_name
    except KeyError:
        return {"refused": "unknown_uid", "uid": facts.uid}
    # ctime, not mtime: a user can set their file's mtime (touch -d), only the kernel sets its ctime.
    return {"uid": facts.uid, "user": user, "code": code, "written_at": int(facts.ctime)}


def collect(directory, uid_min, now=None):
    """Every entry of the spool at ``directory`` judged, then removed: ``(entries, more_left)``.

    A missing spool is ``None`` (the role has not run yet); an untrusted one raises ``Refused``; any other OS
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
        problem = spool_problem(os.fstat(dir_fd))
        if problem is not None:
            raise Refused("unsafe_spool", "%s %s" % (directory, problem))
        listed = sorted(os.listdir(dir_fd))
        names = listed[:MAX_ENTRIES]
        entries = []
        # Every entry is judged before any is removed: removing one name of a hard-linked file first would
        # leave the other with st_nlink 1.
        for name in names:
            try:
                entries.append(_entry(dir_fd, name, now, uid_min))
            except FileNotFoundError:
                continue  # removed meanwhile (a second controller's call): nothing to report
            except OSError as error:
                entries.append({"refused": "unreadable", "detail": error.strerror})
        for name in names:
            _remove(dir_fd, name)
        return entries, len(listed) > MAX_ENTRIES
    except OSError as error:
        raise Failed("spool_unreadable", "%s: %s" % (directory, error.strerror)) from None
    finally:
        os.close(dir_fd)


def login_codes(context, command):
    entries, more = collect(context.config.web_login_dir, context.policy.uid_min)
    return ok(command, spool=context.config.web_login_dir, present=entries is not None, entries=entries or [],
              more=more)
