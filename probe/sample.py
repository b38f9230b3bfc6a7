"""Assemble one sample document (docs/sample.md): identity, inventory, GPU state and cumulative counters."""

from probe import cgroupfs, dropbox, host, nvml, processes
from probe.accounts import Accounts, resolve_uid_min
from probe.constants import PROBE_VERSION, SCHEMA_VERSION
from probe.degraded import Degradations


def _owned(gpu_processes, proc_root, accounts):
    """Add each GPU process's (start_ticks, uid, user) from /proc, so it is identified like any other process."""
    for row in gpu_processes:
        identity = processes.read_identity(proc_root, row["pid"])
        start_ticks, uid = (None, None) if identity is None else identity[:2]
        row.update(start_ticks=start_ticks, uid=uid, user=None if uid is None else accounts.name(uid))
    return gpu_processes


def build(config, nvml_loader=nvml.load_pynvml, accounts=None):
    """The sample as a JSON-ready dict; nothing that fails to read fails the sample (see ``degraded``)."""
    degraded = Degradations()
    proc_root = config.proc_root
    accounts = accounts or Accounts()
    uid_min = resolve_uid_min(config.uid_min)
    clock = host.clock(proc_root)
    node = host.identity(proc_root, degraded)
    node.update(boot_time=clock[0], clock_ticks_per_second=clock[1], page_size=clock[2], uid_min=uid_min)
    user_processes, process_count = processes.scan(proc_root, accounts, uid_min, clock, config.collect_cmdline)
    gpu = nvml.read(nvml_loader(proc_root, degraded), degraded)
    pids_by_uid = {}
    for row in user_processes:
        if row["state"] != "Z":
            pids_by_uid.setdefault(row["uid"], []).append(row["pid"])
    return {
        "schema_version": SCHEMA_VERSION,
        "probe_version": PROBE_VERSION,
        "node": node,
        "hardware": {
            "cpu": host.cpu(proc_root, degraded),
            "memory": host.memory(proc_root, degraded),
            "disks": host.disks(proc_root, degraded),
            "nvidia": gpu["driver"],
        },
        "gpus": gpu["gpus"],
        "gpu_processes": _owned(gpu["processes"], proc_root, accounts),
        "gpu_accounting": gpu["accounting"],
        "process_count": process_count,
        "processes": user_processes,
        "user_cpu": cgroupfs.user_cpu_counters(
            config.cgroup_root, config.cgroup_parent, accounts, degraded, pids_by_uid
        ),
        # the GPU-request box and its holding place: the controller reads them only where this is not 0
        "gpu_requests_waiting": dropbox.names_in(config.gpu_request_dir, config.gpu_request_hold_dir),
        "degraded": degraded.as_list(),
    }
