"""Node identity and hardware inventory (CPU, memory, disks) from /proc, /etc and statvfs."""

import os
import time

from probe import procfs

# Local block filesystems only: statvfs on a network mount can hang the whole sample.
_DISK_FSTYPES = frozenset(("ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "jfs", "reiserfs", "vfat", "exfat"))


def clock(proc_root):
    """``(boot_time, clock_ticks_per_second, page_size)``: what converts /proc ticks and pages to units."""
    boot_time = procfs.parse_btime(procfs.read_text(proc_root + "/stat"))
    return boot_time, os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")


def identity(proc_root, degraded, machine_id_path="/etc/machine-id"):
    """The ``node`` part of a sample."""
    uname = os.uname()
    node = {
        "machine_id": None,
        "boot_id": procfs.read_text(proc_root + "/sys/kernel/random/boot_id").strip(),
        "hostname": uname.nodename,
        "kernel": uname.release,
        "wall_time_ns": time.time_ns(),
        "monotonic_ns": time.monotonic_ns(),
        "boottime_ns": time.clock_gettime_ns(time.CLOCK_BOOTTIME),
    }
    try:
        node["machine_id"] = procfs.read_text(machine_id_path, 4096).strip() or None
    except OSError as error:
        degraded.add("machine_id", "unreadable", "%s: %s" % (machine_id_path, error.strerror))
    return node


def cpu(proc_root, degraded):
    model = cores = sockets = None
    try:
        model, cores, sockets = procfs.parse_cpuinfo(procfs.read_text(proc_root + "/cpuinfo", 4 << 20))
    except OSError as error:
        degraded.add("cpuinfo", "unreadable", error.strerror)
    return {"model": model, "logical_cpus": os.cpu_count(), "physical_cores": cores, "sockets": sockets}


def memory(proc_root, degraded):
    try:
        info = procfs.parse_meminfo(procfs.read_text(proc_root + "/meminfo"))
    except OSError as error:
        degraded.add("meminfo", "unreadable", error.strerror)
        info = {}
    return {"total_bytes": info.get("MemTotal"), "available_bytes": info.get("MemAvailable")}


def disks(proc_root, degraded):
    try:
        mounts = procfs.parse_mounts(procfs.read_text(proc_root + "/self/mounts"))
    except OSError as error:
        degraded.add("disks", "unreadable", error.strerror)
        return []
    rows = []
    seen = set()
    for mount in mounts:
        if mount.fstype not in _DISK_FSTYPES or not mount.device.startswith("/dev/") or mount.device in seen:
            continue
        seen.add(mount.device)
        try:
            st = os.statvfs(mount.mountpoint)
        except OSError as error:
            degraded.add("disks", "statvfs_failed", "%s: %s" % (mount.mountpoint, error.strerror))
            continue
        rows.append(
            {
                "device": mount.device,
                "mountpoint": mount.mountpoint,
                "fstype": mount.fstype,
                "total_bytes": st.f_blocks * st.f_frsize,
                "used_bytes": (st.f_blocks - st.f_bfree) * st.f_frsize,
            }
        )
    return rows
