"""cgroup v2 without systemd: our own group ``<root>/<parent>/user-UID`` with ``cpu.max``.

The root may be the hierarchy's own root (a host without systemd) or a nested cgroup: a subtree systemd delegates
(``Delegate=yes``) or a container's cgroup namespace. The kernel lets only the real root hold processes while it
hands a controller to its children, so under a nested root the processes it holds move into a leaf of their own,
``<root>/<parent>-rest``, before ``+cpu`` is turned on there, and a cleared quota group is drained into that leaf.

Device control on v2 needs a BPF program, which the standard library cannot load: GPU blocks are
declared unsupported here (systemd hosts use the systemd backend instead).
"""

import collections
import os

from probe import abc, cgroupfs, cpuquota, processes
from probe.errors import Unsupported
from probe.plan import Drain, DrainAndRemove, MakeDir, Plan, WriteFile

QuotaObserved = collections.namedtuple(
    "QuotaObserved",
    "quota_ppm raw outside root_subtree parent_subtree parent_exists exists quota_us period_us members user_pids"
    " nested rest_exists",
)
GpuObserved = collections.namedtuple("GpuObserved", "blocked majors outside denied_minors")
SessionObserved = collections.namedtuple("SessionObserved", "quota_group")


def parse_cpu_max(line):
    """``(quota_us or None, period_us)`` from a ``cpu.max`` line such as ``max 100000`` or ``50000 100000``."""
    quota, period = line.split()
    return (None if quota == "max" else int(quota)), int(period)


class CgroupV2(abc.Backend):
    name = "cgroup-v2"

    def __init__(self, cgroup_root, parent, proc_root, cpus):
        self.root = cgroup_root
        self.parent_dir = cgroup_root + "/" + parent
        self.rest_dir = self.parent_dir + "-rest"
        self.proc_root = proc_root
        self.cpus = cpus

    def _group(self, uid):
        return "%s/user-%d" % (self.parent_dir, uid)

    def observe_quota(self, uid):
        group = self._group(uid)
        exists = os.path.isdir(group)
        line = cgroupfs.read_first_line(group + "/cpu.max") if exists else None
        quota_us, period_us = parse_cpu_max(line) if line else (None, None)
        members = cgroupfs.members(group)
        user_pids = tuple(processes.pids_of_uid(self.proc_root, uid))
        return QuotaObserved(
            quota_ppm=None if quota_us is None else cpuquota.from_quota_us(quota_us, period_us, self.cpus),
            raw=line or "",
            outside=0 if quota_us is None else cgroupfs.outside(members, user_pids),
            root_subtree=cgroupfs.controllers(self.root + "/cgroup.subtree_control"),
            parent_subtree=cgroupfs.controllers(self.parent_dir + "/cgroup.subtree_control"),
            parent_exists=os.path.isdir(self.parent_dir),
            exists=exists,
            quota_us=quota_us,
            period_us=period_us,
            members=members,
            user_pids=user_pids,
            # Only a non-root cgroup has cgroup.type (cgroups(7)); the root of a cgroup namespace has one too.
            nested=os.path.isfile(self.root + "/cgroup.type"),
            rest_exists=os.path.isdir(self.rest_dir),
        )

    def _to_rest(self, observed):
        """Steps that give a nested root's processes (and later a cleared group's) a leaf to live in."""
        return [] if observed.rest_exists else [MakeDir(self.rest_dir)]

    def plan_quota(self, uid, ppm, observed):
        group = self._group(uid)
        if ppm is None:
            if not observed.exists:
                return Plan([], "no quota group for uid %d" % uid)
            steps = [] if observed.quota_us is None else [WriteFile(group + "/cpu.max", "max %d" % cpuquota.PERIOD_US)]
            target = self.root
            if observed.nested:
                steps, target = steps + self._to_rest(observed), self.rest_dir
            return Plan(steps + [DrainAndRemove(group, target + "/cgroup.procs")], "")
        steps = []
        if "cpu" not in observed.root_subtree:
            if observed.nested:
                steps += self._to_rest(observed) + [Drain(self.root, self.rest_dir + "/cgroup.procs")]
            steps.append(WriteFile(self.root + "/cgroup.subtree_control", "+cpu"))
        if not observed.parent_exists:
            steps.append(MakeDir(self.parent_dir))
        if "cpu" not in observed.parent_subtree:
            steps.append(WriteFile(self.parent_dir + "/cgroup.subtree_control", "+cpu"))
        if not observed.exists:
            steps.append(MakeDir(group))
        want = cpuquota.to_quota_us(ppm, self.cpus)
        if (observed.quota_us, observed.period_us) != (want, cpuquota.PERIOD_US):
            steps.append(WriteFile(group + "/cpu.max", "%d %d" % (want, cpuquota.PERIOD_US)))
        steps += [
            WriteFile(group + "/cgroup.procs", str(pid), ("ESRCH",))
            for pid in observed.user_pids
            if pid not in observed.members
        ]
        return Plan(steps, "cpu.max already %d %d, every process in the group" % (want, cpuquota.PERIOD_US))

    def observe_session(self, uid):
        return SessionObserved(quota_group=os.path.isdir(self._group(uid)))

    def plan_session(self, uid, pid, metered, observed):
        # One cgroup per process on v2: the quota group is the only place a session can go; there is no
        # separate accounting group (without systemd's user slices CPU is charged per process).
        if not observed.quota_group:
            return Plan([], "uid %d has no quota group" % uid)
        return Plan([WriteFile(self._group(uid) + "/cgroup.procs", str(pid), ("ESRCH",))], "")

    def observe_gpu(self, uid):
        return GpuObserved(blocked=False, majors=cgroupfs.nvidia_majors(self.proc_root), outside=0, denied_minors=None)

    def plan_gpu(self, uid, mask, observed):
        if mask is not None:
            raise Unsupported("no_device_control", "cgroup v2 without systemd has no device controller file")
        return Plan([], "uid %d is not blocked (no device control on this node)" % uid)
