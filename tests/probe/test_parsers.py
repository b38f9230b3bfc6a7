"""Pure parsers of kernel and libc formats, on the exact text those produce."""

import struct

from probe import notify, procfs
from tests.probe import proctree


def test_stat_with_spaces_and_parentheses_in_the_name():
    line = proctree.stat_line(4242, "a) b (c", state="R", ppid=7, utime=11, stime=22, start_ticks=33, rss_pages=44)
    assert procfs.parse_stat(line.encode()) == procfs.ProcStat(4242, "a) b (c", "R", 7, 0x400100, 11, 22, 33, 44)


def test_status_real_uid_is_the_first_of_four():
    data = proctree.status_text(1, "x", 0).replace("Uid:\t0\t0", "Uid:\t1001\t0").encode()
    assert procfs.parse_status_real_uid(data) == 1001


def test_meminfo_cpuinfo_devices_mounts():
    meminfo = procfs.parse_meminfo("MemTotal:  2 kB\nHugePages_Total:       0\n")
    assert meminfo == {"MemTotal": 2048, "HugePages_Total": 0}
    assert procfs.parse_cpuinfo(proctree.DEFAULT_FILES["cpuinfo"]) == ("AMD EPYC 7763 64-Core Processor", 4, 2)
    assert procfs.parse_cpuinfo("processor : 0\nmodel name : X\n\n") == ("X", None, None)
    devices = procfs.parse_devices(proctree.DEFAULT_FILES["devices"])
    assert (234, "nvidia-uvm") in devices["char"] and (8, "sd") in devices["block"]
    mounts = procfs.parse_mounts("/dev/sdb1 /mnt/my\\040data ext4 rw 0 0\n")
    assert mounts == [procfs.Mount("/dev/sdb1", "/mnt/my data", "ext4")]


def test_utmp_records():
    def record(kind, pid, line, user):
        raw = struct.pack("<hxxi32s4s32s256s", kind, pid, line.encode(), b"ts/0", user.encode(), b"host")
        return raw.ljust(384, b"\0")

    data = record(notify.USER_PROCESS, 10, "pts/3", "alice") + record(8, 11, "pts/4", "alice")
    assert notify.parse_utmp(data) == [(7, 10, "pts/3", "alice"), (8, 11, "pts/4", "alice")]
