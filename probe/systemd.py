"""systemd hosts (cgroup v1 or v2): ``systemctl set-property --runtime user-UID.slice``.

systemd is the single writer of its cgroup tree, so nothing here writes cgroup files directly. Facts
come from ``systemctl show`` and the pure parsers below.

A GPU block is ``DevicePolicy=closed`` (only the pseudo devices such as /dev/null and /dev/pts stay open) plus
a ``DeviceAllow=`` for every device group of /proc/devices but NVIDIA's. A GPU mask (some minors denied) also
allows the shared NVIDIA devices (``nvidiactl``, ``nvidia-modeset``, the ``nvidia-uvm``/``nvidia-caps``
groups) and ``/dev/nvidiaN`` for each GPU of this node not in the mask. Every change resets the list and sets
it whole in one ``set-property`` call, so the slice never holds a half-written list.

An unblock is ``DevicePolicy=auto`` with ``DeviceAllow=char-* rwm`` and ``block-* rwm`` (every device group),
not the bare ``DevicePolicy=auto DeviceAllow=``: systemd 252 leaves the slice's last device program attached when
the policy becomes "no restriction", so the kernel went on refusing the GPUs to an unblocked user (seen on the
suite's Debian 12 node, tests/vm/test_node_systemd.py). A list makes systemd build and attach a new program.
"""

import collections
import os
import re

from probe import abc, cgroupfs, cpuquota, processes, procfs
from probe.constants import NVIDIA_MAJOR
from probe.gpumask import ALL
from probe.plan import Plan, Run, run_argv

SYSTEMD_RUN_DIR = "/run/systemd/system"
_SYSTEMCTL_PATHS = ("/usr/bin/systemctl", "/bin/systemctl")
_UNITS_USEC = {"us": 1, "ms": 1000, "s": 10**6, "min": 60 * 10**6, "h": 3600 * 10**6, "d": 86400 * 10**6}
_SPAN = re.compile(r"([0-9]+)(?:\.([0-9]+))?(us|ms|s|min|h|d)\Z")
_DEVICE_NAME = re.compile(r"[A-Za-z0-9_.:+-]+\Z")
_GPU_NODE = re.compile(r"nvidia(0|[1-9][0-9]{0,2})\Z")
# Shared by every GPU: a process needs them to use the GPUs it may open.
SHARED_NVIDIA_NODES = ("nvidiactl", "nvidia-modeset")
# systemd matches char-/block- names against /proc/devices with fnmatch: these allow every group it lists.
UNBLOCKED_ALLOW = ("DeviceAllow=char-* rwm", "DeviceAllow=block-* rwm")

QuotaObserved = collections.namedtuple("QuotaObserved", "quota_ppm raw outside usec_per_sec")
GpuObserved = collections.namedtuple(
    "GpuObserved",
    "blocked majors outside policy allow_groups allowed gpu_minors shared_nodes nvidia_groups denied_minors",
)


def is_systemd_host(run_dir=SYSTEMD_RUN_DIR):
    """sd_booted(3): systemd is PID 1 and manages the cgroup tree."""
    return os.path.isdir(run_dir)


def parse_show_all(text, key):
    """Every non-empty value of ``key`` in ``systemctl show`` output (list properties print one line each)."""
    return [line[len(key) + 1 :] for line in text.splitlines() if line.startswith(key + "=") and line[len(key) + 1 :]]


def gpu_nodes(names):
    """``(gpu_minors, shared)`` from a /dev listing: the N of each ``nvidiaN`` and the shared nodes present."""
    minors = sorted(int(match.group(1)) for match in map(_GPU_NODE.match, names) if match)
    return tuple(minors), tuple(name for name in SHARED_NVIDIA_NODES if name in names)


def shared_nvidia_groups(devices):
    """``DeviceAllow=`` values for the NVIDIA character groups that are not the GPUs' own major (uvm, caps)."""
    return [
        "DeviceAllow=char-%s rw" % name
        for major, name in devices["char"]
        if cgroupfs.is_nvidia_device(major, name) and major != NVIDIA_MAJOR and _DEVICE_NAME.match(name)
    ]


def mask_allow_list(mask, observed):
    """The whole ``DeviceAllow=`` list that enforces ``mask`` (``ALL`` or minors) under DevicePolicy=closed."""
    entries = list(observed.allow_groups)
    if mask == ALL:
        return entries
    entries += observed.nvidia_groups
    entries += ["DeviceAllow=/dev/%s rw" % name for name in observed.shared_nodes]
    return entries + ["DeviceAllow=/dev/nvidia%d rw" % minor for minor in observed.gpu_minors if minor not in mask]


def _denied_minors(policy, allowed, gpu_minors):
    """What a slice's policy and ``DeviceAllow`` list deny: None, ``ALL`` (no NVIDIA node allowed) or minors."""
    if policy != "closed":
        return None
    nodes = [entry.split()[0][len("/dev/") :] for entry in allowed if entry.startswith("/dev/nvidia")]
    if not nodes:
        return ALL
    open_minors = gpu_nodes(nodes)[0]
    return tuple(minor for minor in gpu_minors if minor not in open_minors)


def parse_show(text):
    """``systemctl show -p A -p B`` output as ``{A: value}`` (a repeated key keeps the last value)."""
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key] = value
    return values


def parse_timespan_usec(text):
    """A systemd timespan (``6.400000s``, ``1min 4s``, ``infinity``) in whole microseconds; None = infinity."""
    text = text.strip()
    if text == "infinity":
        return None
    total = 0
    for word in text.split():
        match = _SPAN.match(word)
        if not match:
            raise ValueError("not a systemd timespan: %r" % text)
        whole, fraction, unit = match.groups()
        scale = _UNITS_USEC[unit]
        total += int(whole) * scale
        if fraction:
            total += int(fraction) * scale // 10 ** len(fraction)
    return total


def in_slice(cgroup_text, slice_name):
    """Whether a /proc/PID/cgroup text places the process in ``slice_name`` (or below it) in any hierarchy."""
    for line in cgroup_text.splitlines():
        path = line.split(":", 2)[-1]
        if ("/" + slice_name + "/") in path + "/":
            return True
    return False


def device_allow_list(devices):
    """``DeviceAllow=`` values for every device group in parsed /proc/devices except NVIDIA's."""
    allowed = []
    for kind in ("char", "block"):
        for major, name in devices[kind]:
            if cgroupfs.is_nvidia_device(major, name) or not _DEVICE_NAME.match(name):
                continue
            entry = "DeviceAllow=%s-%s rwm" % (kind, name)
            if entry not in allowed:
                allowed.append(entry)
    return allowed


def _systemctl():
    for path in _SYSTEMCTL_PATHS:
        if os.access(path, os.X_OK):
            return path
    return _SYSTEMCTL_PATHS[0]


class Systemd(abc.Backend):
    name = "systemd"

    def __init__(self, proc_root, cpus, show=None, dev_root="/dev"):
        self.proc_root = proc_root
        self.dev_root = dev_root
        self.cpus = cpus
        self.systemctl = _systemctl()
        self._show = show or run_argv

    def _slice(self, uid):
        return "user-%d.slice" % uid

    def _set(self, uid, *assignments):
        return Run((self.systemctl, "set-property", "--runtime", self._slice(uid)) + assignments)

    def _show_text(self, uid, *names):
        argv = [self.systemctl, "show"] + ["--property=" + name for name in names] + [self._slice(uid)]
        return self._show(argv)

    def _properties(self, uid, *names):
        return parse_show(self._show_text(uid, *names))

    def _outside(self, uid):
        """The user's processes outside user-UID.slice (started by a system service, not a session): systemd
        cannot adopt them into the slice, so they are reported, not moved."""
        count = 0
        for pid in processes.pids_of_uid(self.proc_root, uid):
            try:
                text = procfs.read_text("%s/%d/cgroup" % (self.proc_root, pid))
            except OSError:
                continue  # it exited
            count += not in_slice(text, self._slice(uid))
        return count

    def observe_quota(self, uid):
        raw = self._properties(uid, "CPUQuotaPerSecUSec").get("CPUQuotaPerSecUSec", "infinity")
        usec = parse_timespan_usec(raw)
        return QuotaObserved(
            quota_ppm=None if usec is None else cpuquota.from_usec_per_sec(usec, self.cpus),
            raw=raw,
            outside=0 if usec is None else self._outside(uid),
            usec_per_sec=usec,
        )

    def plan_quota(self, uid, ppm, observed):
        if ppm is None:
            if observed.usec_per_sec is None:
                return Plan([], "no CPUQuota on %s" % self._slice(uid))
            return Plan([self._set(uid, "CPUQuota=")], "")
        percent = cpuquota.to_systemd_percent(ppm, self.cpus)
        if observed.usec_per_sec == percent * 10000:
            return Plan([], "%s already has CPUQuota=%d%%" % (self._slice(uid), percent))
        return Plan([self._set(uid, "CPUQuota=%d%%" % percent)], "")

    def observe_session(self, uid):
        return None

    def plan_session(self, uid, pid, metered, observed):
        reason = "pam_systemd puts every session in %s, whose CPUQuota= and DevicePolicy= hold for it"
        return Plan([], reason % self._slice(uid))

    def observe_gpu(self, uid):
        text = self._show_text(uid, "DevicePolicy", "DeviceAllow")
        devices = procfs.parse_devices(procfs.read_text(self.proc_root + "/devices"))
        policy = parse_show(text).get("DevicePolicy", "auto")
        allowed = tuple(parse_show_all(text, "DeviceAllow"))
        blocked = policy == "closed"
        try:
            names = os.listdir(self.dev_root)
        except OSError:
            names = []
        gpu_minors, shared_nodes = gpu_nodes(names)
        return GpuObserved(
            blocked=blocked,
            majors=cgroupfs.nvidia_majors_of(devices),
            outside=self._outside(uid) if blocked else 0,
            policy=policy,
            allow_groups=tuple(device_allow_list(devices)),
            allowed=allowed,
            gpu_minors=gpu_minors,
            shared_nodes=shared_nodes,
            nvidia_groups=tuple(shared_nvidia_groups(devices)),
            denied_minors=_denied_minors(policy, allowed, gpu_minors),
        )

    def plan_gpu(self, uid, mask, observed):
        if mask is None:
            if not observed.blocked:
                return Plan([], "%s DevicePolicy is already %s" % (self._slice(uid), observed.policy))
            return Plan([self._set(uid, "DevicePolicy=auto", "DeviceAllow=", *UNBLOCKED_ALLOW)], "")
        want = mask_allow_list(mask, observed)
        if observed.blocked and sorted("DeviceAllow=" + entry for entry in observed.allowed) == sorted(want):
            return Plan([], "%s is already closed with exactly %d DeviceAllow entries" % (self._slice(uid), len(want)))
        return Plan([self._set(uid, "DevicePolicy=closed", "DeviceAllow=", *want)], "")
