"""``notify``: write one line to the terminals of one user, and nowhere else.

Terminals come from utmp ``USER_PROCESS`` records and from fd 0-2 of the user's processes. Each is
opened without following symlinks and used only if it is a character device owned by the user, so a
user cannot point the root-run writer at any other file.
"""

import os
import re
import stat
import struct

from probe import processes
from probe.errors import Refused

UTMP_PATH = "/var/run/utmp"
USER_PROCESS = 7
MAX_MESSAGE_BYTES = 1000
_UTMP_RECORD = struct.Struct("<hxxi32s4s32s256s")
_UTMP_SIZE = 384  # glibc x86_64/aarch64 struct utmp
_TTY_LINE = re.compile(r"(pts/[0-9]{1,7}|tty[A-Za-z0-9]{1,10})\Z")


def message_from(raw):
    """The message from stdin bytes: one printable line (a trailing newline is dropped)."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise Refused("bad_message", "longer than %d bytes" % MAX_MESSAGE_BYTES)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused("bad_message", "not UTF-8") from None
    if text.endswith("\n"):
        text = text[:-1]
    if not text or not text.isprintable():
        raise Refused("bad_message", "must be one non-empty line of printable characters")
    return text


def _c_string(raw):
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def parse_utmp(data):
    """``[(type, pid, line, user)]`` from utmp bytes."""
    records = []
    for offset in range(0, len(data) - _UTMP_SIZE + 1, _UTMP_SIZE):
        kind, pid, line, _, user, _ = _UTMP_RECORD.unpack_from(data, offset)
        records.append((kind, pid, _c_string(line), _c_string(user)))
    return records


def terminal_lines(user, uid, proc_root, utmp_path=UTMP_PATH):
    """The tty lines (``pts/3``) that ``user`` is logged in on, or that its processes hold on fd 0-2."""
    lines = set()
    try:
        with open(utmp_path, "rb") as handle:
            records = parse_utmp(handle.read(1 << 22))
    except OSError:
        records = []
    lines.update(line for kind, _, line, name in records if kind == USER_PROCESS and name == user)
    for pid in processes.pids_of_uid(proc_root, uid):
        for fd in (0, 1, 2):
            try:
                target = os.readlink("%s/%d/fd/%d" % (proc_root, pid, fd))
            except OSError:
                continue
            if target.startswith("/dev/"):
                lines.add(target[len("/dev/") :])
    return sorted(line for line in lines if _TTY_LINE.match(line))


def write_to_terminals(lines, uid, message, dev_dir="/dev"):
    """Write ``message`` to each line owned by ``uid``; returns ``(written, skipped)``."""
    payload = ("\r\ngpuledger: %s\r\n" % message).encode("utf-8")
    written, skipped = [], []
    for line in lines:
        path = "%s/%s" % (dev_dir, line)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NOCTTY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as error:
            skipped.append({"tty": path, "reason": error.strerror or str(error)})
            continue
        try:
            info = os.fstat(fd)
            if not stat.S_ISCHR(info.st_mode) or info.st_uid != uid:
                skipped.append({"tty": path, "reason": "not a terminal owned by uid %d" % uid})
                continue
            os.write(fd, payload)
            written.append(path)
        except OSError as error:
            skipped.append({"tty": path, "reason": error.strerror or str(error)})
        finally:
            os.close(fd)
    return written, skipped
