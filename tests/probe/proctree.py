"""Build fixture /proc trees in the kernel's own file formats, for ``proc_root``-injected tests."""

import os

BOOT_ID = "0f3c9a52-7d1e-4b8a-9c6f-2e5d4a3b1c0e"
BTIME = 1764000000
PF_KTHREAD = 0x00200000


def stat_line(pid, comm, state="S", ppid=1, flags=0x400100, utime=0, stime=0, start_ticks=0, rss_pages=0):
    """A /proc/PID/stat line with all 52 fields, as Linux 6.x prints it."""
    fields = [state, ppid, pid, pid, 0, -1, flags, 10, 0, 0, 0, utime, stime, 0, 0, 20, 0, 1, 0, start_ticks]
    fields += [rss_pages * 4096 * 3, rss_pages, 18446744073709551615] + [0] * 29
    return f"{pid} ({comm}) {' '.join(str(f) for f in fields)}\n"


def status_text(pid, comm, uid):
    ids = "\t".join([str(uid)] * 4)
    return (
        f"Name:\t{comm}\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t{pid}\nNgid:\t0\nPid:\t{pid}\nPPid:\t1\n"
        f"TracerPid:\t0\nUid:\t{ids}\nGid:\t{ids}\nFDSize:\t64\n"
    )


DEFAULT_FILES = {
    "stat": f"cpu  100 0 100 1000 0 0 0 0 0 0\nbtime {BTIME}\nprocesses 4242\n",
    "meminfo": "MemTotal:       263855560 kB\nMemFree:        200000000 kB\nMemAvailable:   250000000 kB\n",
    "cpuinfo": "".join(
        f"processor\t: {n}\nmodel name\t: AMD EPYC 7763 64-Core Processor\nphysical id\t: {n // 4}\n"
        f"core id\t\t: {n % 4 // 2}\n\n"
        for n in range(8)
    ),
    "devices": "Character devices:\n  1 mem\n  4 /dev/vc/0\n  5 /dev/tty\n136 pts\n195 nvidia-frontend\n"
    "234 nvidia-uvm\n235 nvidia-caps\n\nBlock devices:\n  8 sd\n259 blkext\n",
    "self/mounts": "/dev/root / ext4 rw,relatime 0 0\nproc /proc proc rw 0 0\n",
    "sys/kernel/random/boot_id": BOOT_ID + "\n",
}


def write(root, relative, text, owner=None):
    path = os.path.join(root, relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text)
    if owner is not None and os.geteuid() == 0:
        os.chown(path, owner, -1)
    return path


def build(root, processes, files=None, nvidia_driver=False):
    """Write a tree at ``root``. Each process is a dict: pid, comm, uid and any ``stat_line`` keyword, plus
    ``kthread`` (a kernel thread), ``nondumpable`` (its files owned by root) and ``cmdline`` (argv list).
    """
    merged = dict(DEFAULT_FILES)
    merged.update(files or {})
    for relative, text in merged.items():
        write(root, relative, text)
    if nvidia_driver:
        write(root, "driver/nvidia/version", "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15\n")
    for proc in processes:
        proc = dict(proc)
        pid, comm, uid = proc.pop("pid"), proc.pop("comm"), proc.pop("uid")
        owner = 0 if proc.pop("nondumpable", False) else uid
        if proc.pop("kthread", False):
            proc["flags"] = proc.get("flags", 0) | PF_KTHREAD
        cmdline = proc.pop("cmdline", [comm])
        write(root, f"{pid}/stat", stat_line(pid, comm, **proc), owner)
        write(root, f"{pid}/status", status_text(pid, comm, uid), owner)
        write(root, f"{pid}/cmdline", "".join(arg + "\0" for arg in cmdline), owner)
    return root
