"""Choose the enforcement backend this node supports: systemd, else cgroup v2, else cgroup v1."""

import os

from probe.cgroup_v1 import CgroupV1
from probe.cgroup_v2 import CgroupV2
from probe.errors import Unsupported
from probe.systemd import Systemd, is_systemd_host


def detect(config, cpus=None, systemd_run_dir=None):
    """The backend for ``config``'s cgroup root; ``Unsupported`` when there is none."""
    cpus = cpus or os.cpu_count()
    if is_systemd_host(*(() if systemd_run_dir is None else (systemd_run_dir,))):
        return Systemd(config.proc_root, cpus)
    root = config.cgroup_root
    if os.path.isfile(root + "/cgroup.controllers"):
        return CgroupV2(root, config.cgroup_parent, config.proc_root, cpus)
    if os.path.isfile(root + "/cpu/cpu.cfs_quota_us"):
        return CgroupV1(root, config.cgroup_parent, config.proc_root, cpus, config.gpu_mask_dir)
    raise Unsupported("no_cgroup_backend", "no systemd, no cgroup v2 and no cgroup v1 cpu hierarchy under " + root)
