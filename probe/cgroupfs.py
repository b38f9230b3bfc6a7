"""Reading cgroup files: group members, controller lists, NVIDIA device majors, per-user CPU counters."""

import os
import re

from probe import procfs
from probe.constants import NVIDIA_MAJOR

_USER_SLICE = re.compile(r"user-([0-9]+)\.slice\Z")
_ACCOUNTING_GROUP = re.compile(r"user-([0-9]+)\Z")


def read_first_line(path):
    """The first line of ``path`` stripped, or None if the file does not exist."""
    try:
        with open(path) as handle:
            return handle.readline().strip()
    except FileNotFoundError:
        return None


def members(group):
    """The pids in ``group``'s ``cgroup.procs`` (empty when the group does not exist)."""
    try:
        with open(group + "/cgroup.procs") as handle:
            return frozenset(int(word) for word in handle.read().split())
    except FileNotFoundError:
        return frozenset()


def outside(group_members, user_pids):
    """How many of ``user_pids`` are not in the group: the processes a restriction does not reach yet."""
    return sum(1 for pid in user_pids if pid not in group_members)


def controllers(path):
    """The controller names in a ``cgroup.controllers``/``cgroup.subtree_control`` file."""
    line = read_first_line(path)
    return frozenset(word.lstrip("+") for word in (line or "").split())


def is_nvidia_device(major, name):
    return major == NVIDIA_MAJOR or name.startswith("nvidia")


def nvidia_majors_of(devices):
    """195 plus the majors of every character device whose name starts with ``nvidia`` (uvm, caps, ...)."""
    return sorted({NVIDIA_MAJOR} | {major for major, name in devices["char"] if is_nvidia_device(major, name)})


def nvidia_majors(proc_root):
    return nvidia_majors_of(procfs.parse_devices(procfs.read_text(proc_root + "/devices")))


def user_cpu_counters(cgroup_root, parent, accounts, degraded, pids_by_uid):
    """Cumulative CPU time per user: v2 ``cpu.stat usage_usec`` or v1 ``cpuacct.usage`` (ns) of systemd's
    user slices, else of the v1 accounting groups ``cpuacct/<parent>/user-UID`` that the PAM session hook
    puts every login in. An accounting-group row says how many of the uid's processes (``pids_by_uid``)
    are ``outside`` it: the collector charges from the counter only while that is 0."""
    accounting = False
    if os.path.isfile(cgroup_root + "/cgroup.controllers"):
        base, source = cgroup_root + "/user.slice", "cgroup-v2"
    elif os.path.isdir(cgroup_root + "/cpuacct/user.slice"):
        base, source = cgroup_root + "/cpuacct/user.slice", "cgroup-v1"
    else:
        base, source, accounting = cgroup_root + "/cpuacct/" + parent, "accounting-v1", True
    try:
        names = sorted(os.listdir(base))
    except FileNotFoundError:
        if accounting and os.path.isfile(cgroup_root + "/cpuacct/cpuacct.usage"):
            return []  # the hook has placed no session yet: no user has a counter
        degraded.add("user_cpu", "no_user_slices", "%s: no such directory" % base)
        return []
    except OSError as error:
        degraded.add("user_cpu", "no_user_slices", "%s: %s" % (base, error.strerror))
        return []
    rows = []
    for name in names:
        match = (_ACCOUNTING_GROUP if accounting else _USER_SLICE).match(name)
        if not match:
            continue
        uid = int(match.group(1))
        try:
            usage_ns = _usage_ns(base + "/" + name, source)
        except (OSError, ValueError) as error:
            degraded.add("user_cpu", "unreadable", "%s: %s" % (name, error))
            continue
        row = {"uid": uid, "user": accounts.name(uid), "usage_ns": usage_ns, "source": source}
        if accounting:
            row["outside"] = outside(members(base + "/" + name), pids_by_uid.get(uid, ()))
        rows.append(row)
    return rows


def _usage_ns(slice_dir, source):
    if source != "cgroup-v2":
        return int(procfs.read_text(slice_dir + "/cpuacct.usage").strip())
    for line in procfs.read_text(slice_dir + "/cpu.stat").splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec":
            return int(value) * 1000
    raise ValueError("no usage_usec in cpu.stat")
