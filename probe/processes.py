"""The per-process scan, straight from /proc (a third of the cost of a psutil scan; bench/probe.py).

A process is identified by (boot_id, pid, start_ticks). Its uid is the owner of /proc/PID/stat (the
effective uid), except that a non-dumpable process's files are owned by root, so for root-owned entries
the real uid is read from /proc/PID/status: a user cannot hide from billing by turning off dumpability.
"""

import os

from probe import procfs

MAX_CMDLINE_CHARS = 4096


def _read_stat(proc_root, name):
    fd = os.open(proc_root + "/" + name + "/stat", os.O_RDONLY)
    try:
        return os.read(fd, 4096), os.fstat(fd).st_uid
    finally:
        os.close(fd)


def _read_real_uid(proc_root, name):
    # Uid: is the ninth line of status; 1 KiB always holds it, and a raw read is a third cheaper than open().
    fd = os.open(proc_root + "/" + name + "/status", os.O_RDONLY)
    try:
        return procfs.parse_status_real_uid(os.read(fd, 1024))
    finally:
        os.close(fd)


def iter_processes(proc_root):
    """Yield ``(ProcStat, uid)`` for every process that is not a kernel thread; vanished ones are skipped."""
    for name in os.listdir(proc_root):
        if not name.isdigit():
            continue
        try:
            data, uid = _read_stat(proc_root, name)
            stat = procfs.parse_stat(data)
            if procfs.is_kernel_thread(stat):
                continue
            if uid == 0:
                uid = _read_real_uid(proc_root, name)
        except (OSError, ValueError, IndexError):
            # The process exited between listdir and the read, or its files are half-gone.
            continue
        yield stat, uid


def read_identity(proc_root, pid):
    """``(start_ticks, real_uid, state)`` of ``pid`` now, or None if it does not exist."""
    try:
        stat = procfs.parse_stat(procfs.read_bytes("%s/%d/stat" % (proc_root, pid), 4096))
        uid = _read_real_uid(proc_root, str(pid))
    except (OSError, ValueError, IndexError):
        return None
    return stat.start_ticks, uid, stat.state


def pids_of_uid(proc_root, uid):
    """Sorted pids of the live (non-zombie) processes whose uid is ``uid``."""
    return sorted(stat.pid for stat, owner in iter_processes(proc_root) if owner == uid and stat.state != "Z")


def _cmdline(proc_root, pid):
    try:
        raw = procfs.read_bytes("%s/%d/cmdline" % (proc_root, pid), MAX_CMDLINE_CHARS * 4)
    except OSError:
        return None
    return raw.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace")[:MAX_CMDLINE_CHARS]


def scan(proc_root, accounts, uid_min, clock, collect_cmdline):
    """``(user_processes, total_processes)``: one dict per process whose uid is at least ``uid_min``.

    ``clock`` is ``(boot_time, clock_ticks_per_second, page_size)``; ``create_time_ms`` is rounded down.
    """
    boot_time, ticks_per_second, page_size = clock
    rows = []
    total = 0
    for stat, uid in iter_processes(proc_root):
        total += 1
        if uid < uid_min:
            continue
        row = {
            "pid": stat.pid,
            "ppid": stat.ppid,
            "uid": uid,
            "user": accounts.name(uid),
            "start_ticks": stat.start_ticks,
            "create_time_ms": boot_time * 1000 + stat.start_ticks * 1000 // ticks_per_second,
            "state": stat.state,
            "cpu_user_ticks": stat.utime,
            "cpu_system_ticks": stat.stime,
            "rss_bytes": stat.rss_pages * page_size,
            "name": stat.comm,
        }
        if collect_cmdline:
            row["cmdline"] = _cmdline(proc_root, stat.pid)
        rows.append(row)
    rows.sort(key=lambda row: row["pid"])
    return rows, total
