"""cgroup v1 without systemd: our own groups ``<root>/{cpu,devices}/<parent>/user-UID``.

On v1 in default-allow mode ``devices.list`` cannot show deny exceptions, so the group's existence is
the block state, and the deny rules written into it are recorded in ``<gpu_mask_dir>/<parent>.user-UID``
(volatile like the groups; a group without a record is the whole-GPU block of earlier versions); ``outside``
says how many of the user's processes the group does not hold (yet). It is created under a staging name,
denied, recorded, then renamed, so a crash can never leave a group that looks blocked without its deny rules.
A change of mask denies what is new, then allows what is no longer denied (on v1 an allow removes exactly the
deny exception it names), with the union recorded first so a crash in between leaves a record that holds
at least every rule in force, and the next call removes the rest.
"""

import collections
import os

from probe import abc, atomicfile, cgroupfs, cpuquota, processes
from probe.constants import NVIDIA_MAJOR
from probe.gpumask import ALL
from probe.plan import DrainAndRemove, MakeDir, Plan, Record, Rename, WriteFile

QuotaObserved = collections.namedtuple(
    "QuotaObserved", "quota_ppm raw outside exists quota_us period_us members user_pids"
)
GpuObserved = collections.namedtuple(
    "GpuObserved", "blocked majors outside staging members user_pids denied denied_minors"
)
SessionObserved = collections.namedtuple("SessionObserved", "quota_group device_group accounting_group")


def _read_int(path):
    line = cgroupfs.read_first_line(path)
    return None if line is None else int(line)


def deny_rules(mask, majors):
    """The ``devices.deny`` lines for a ``probe.gpumask`` mask: every NVIDIA major, or 195:N per minor."""
    if mask is None:
        return frozenset()
    if mask == ALL:
        return frozenset("c %d:* rwm" % major for major in majors)
    return frozenset("c %d:%d rwm" % (NVIDIA_MAJOR, minor) for minor in mask)


def mask_of(rules):
    """The mask that a set of deny lines enforces (``deny_rules`` backwards)."""
    if not rules:
        return None
    if "c %d:* rwm" % NVIDIA_MAJOR in rules:
        return ALL
    prefix = "c %d:" % NVIDIA_MAJOR
    return tuple(sorted(int(rule[len(prefix) :].split()[0]) for rule in rules if rule.startswith(prefix)))


def _record_text(rules):
    return "".join(rule + "\n" for rule in sorted(rules))


def _moves(group, members, user_pids):
    return [WriteFile(group + "/cgroup.procs", str(pid), ("ESRCH",)) for pid in user_pids if pid not in members]


class CgroupV1(abc.Backend):
    name = "cgroup-v1"

    def __init__(self, cgroup_root, parent, proc_root, cpus, mask_dir):
        self.mask_dir = mask_dir
        self.cpu_root = cgroup_root + "/cpu"
        self.devices_root = cgroup_root + "/devices"
        self.cpuacct_root = cgroup_root + "/cpuacct"
        self.parent = parent
        self.proc_root = proc_root
        self.cpus = cpus

    def _group(self, hierarchy, uid):
        return "%s/%s/user-%d" % (hierarchy, self.parent, uid)

    def observe_quota(self, uid):
        group = self._group(self.cpu_root, uid)
        exists = os.path.isdir(group)
        quota_us = _read_int(group + "/cpu.cfs_quota_us") if exists else None
        period_us = _read_int(group + "/cpu.cfs_period_us") if exists else None
        limited = quota_us is not None and quota_us >= 0
        members = cgroupfs.members(group)
        user_pids = tuple(processes.pids_of_uid(self.proc_root, uid))
        return QuotaObserved(
            quota_ppm=cpuquota.from_quota_us(quota_us, period_us, self.cpus) if limited else None,
            raw="%s %s" % (quota_us, period_us) if exists else "",
            outside=cgroupfs.outside(members, user_pids) if limited else 0,
            exists=exists,
            quota_us=quota_us,
            period_us=period_us,
            members=members,
            user_pids=user_pids,
        )

    def plan_quota(self, uid, ppm, observed):
        group = self._group(self.cpu_root, uid)
        if ppm is None:
            if not observed.exists:
                return Plan([], "no quota group for uid %d" % uid)
            steps = [] if observed.quota_us == -1 else [WriteFile(group + "/cpu.cfs_quota_us", "-1")]
            return Plan(steps + [DrainAndRemove(group, self.cpu_root + "/cgroup.procs")], "")
        steps = []
        if not observed.exists:
            steps += [MakeDir("%s/%s" % (self.cpu_root, self.parent)), MakeDir(group)]
        if observed.period_us != cpuquota.PERIOD_US:
            steps.append(WriteFile(group + "/cpu.cfs_period_us", str(cpuquota.PERIOD_US)))
        want = cpuquota.to_quota_us(ppm, self.cpus)
        if observed.quota_us != want:
            steps.append(WriteFile(group + "/cpu.cfs_quota_us", str(want)))
        steps += _moves(group, observed.members, observed.user_pids)
        return Plan(steps, "quota already %d us per %d us, every process in the group" % (want, cpuquota.PERIOD_US))

    def _record_name(self, uid):
        return "%s.user-%d" % (self.parent, uid)

    def observe_gpu(self, uid):
        group = self._group(self.devices_root, uid)
        blocked = os.path.isdir(group)
        members = cgroupfs.members(group)
        user_pids = tuple(processes.pids_of_uid(self.proc_root, uid))
        majors = cgroupfs.nvidia_majors(self.proc_root)
        denied = frozenset()
        if blocked:
            recorded = atomicfile.read(self.mask_dir, self._record_name(uid))
            text = recorded.decode("ascii", "replace") if recorded is not None else None
            denied = deny_rules(ALL, majors) if text is None else frozenset(filter(None, text.splitlines()))
        return GpuObserved(
            blocked=blocked,
            majors=majors,
            outside=cgroupfs.outside(members, user_pids) if blocked else 0,
            staging=os.path.isdir(group + ".staging"),
            members=members,
            user_pids=user_pids,
            denied=denied,
            denied_minors=mask_of(denied),
        )

    def observe_session(self, uid):
        return SessionObserved(
            quota_group=os.path.isdir(self._group(self.cpu_root, uid)),
            device_group=os.path.isdir(self._group(self.devices_root, uid)),
            accounting_group=os.path.isdir(self._group(self.cpuacct_root, uid)),
        )

    def plan_session(self, uid, pid, metered, observed):
        # The accounting group has no limits: it only counts (cpuacct.usage), so CPU of a process that starts
        # and exits between two samples is charged. Where cpu and cpuacct share a mount it is the quota group.
        steps = []
        if metered:
            if not observed.accounting_group:
                parent = "%s/%s" % (self.cpuacct_root, self.parent)
                steps += [MakeDir(parent), MakeDir(self._group(self.cpuacct_root, uid))]
            steps += _moves(self._group(self.cpuacct_root, uid), (), (pid,))
        for hierarchy, exists in ((self.cpu_root, observed.quota_group), (self.devices_root, observed.device_group)):
            if exists:
                steps += _moves(self._group(hierarchy, uid), (), (pid,))
        return Plan(steps, "uid %d is neither metered nor restricted here" % uid)

    def plan_gpu(self, uid, mask, observed):
        group = self._group(self.devices_root, uid)
        root_procs = self.devices_root + "/cgroup.procs"
        record = self._record_name(uid)
        if mask is None:
            if not observed.blocked:
                return Plan([], "uid %d is not blocked" % uid)
            steps = [WriteFile(group + "/devices.allow", "a *:* rwm"), DrainAndRemove(group, root_procs)]
            return Plan(steps + [Record(self.mask_dir, record, None)], "")
        want = deny_rules(mask, observed.majors)
        steps = []
        if not observed.blocked:
            staging = group + ".staging"
            if observed.staging:
                steps.append(DrainAndRemove(staging, root_procs))
            steps += [MakeDir("%s/%s" % (self.devices_root, self.parent)), MakeDir(staging)]
            steps += [WriteFile(staging + "/devices.deny", rule) for rule in sorted(want)]
            steps += [Record(self.mask_dir, record, _record_text(want)), Rename(staging, group)]
        else:
            new, old = want - observed.denied, observed.denied - want
            if old:
                steps.append(Record(self.mask_dir, record, _record_text(want | observed.denied)))
            steps += [WriteFile(group + "/devices.deny", rule) for rule in sorted(new)]
            steps += [WriteFile(group + "/devices.allow", rule) for rule in sorted(old)]
            if new or old:
                steps.append(Record(self.mask_dir, record, _record_text(want)))
        steps += _moves(group, observed.members, observed.user_pids)
        return Plan(steps, "uid %d already denied %s, every process in the group" % (uid, " ".join(sorted(want))))
