"""Building ``Sample`` records for the pure usage tests: a node at a given boot-clock time with given facts."""

from __future__ import annotations

from types import MappingProxyType

from collector.charging.samples import AccountingRecord, Gpu, GpuProcess, Process, Sample, UserCpu

BOOT_A = "11111111-1111-1111-1111-111111111111"
BOOT_B = "22222222-2222-2222-2222-222222222222"
GPU0 = "GPU-00000000-0000-0000-0000-000000000000"
GPU1 = "GPU-11111111-0000-0000-0000-000000000000"
MIG = "MIG-11111111-aaaa-0000-0000-000000000000"
S = 1_000_000_000
HZ = 100
# The node's boot happened at this wall-clock time (ns): wall = BOOT_WALL + boot clock.
BOOT_WALL = 1_764_000_000 * S


def proc(pid: int, uid: int, start_s: float, cpu_s: float, user: str | None = None) -> Process:
    return Process(pid=pid, start_ticks=int(start_s * HZ), uid=uid, user=user or f"u{uid}", cpu_ticks=int(cpu_s * HZ),
                   rss_bytes=1 << 20)


def sample(
    t_s: float,
    *,
    boot: str = BOOT_A,
    boot_wall: int = BOOT_WALL,
    processes: tuple[Process, ...] = (),
    user_cpu: dict[int, float] | None = None,
    gpu_processes: tuple[tuple[str, int, int | None], ...] = (),
    accounting: tuple[AccountingRecord, ...] = (),
    machine: str = "m1",
) -> Sample:
    return Sample(
        machine_id=machine,
        boot_id=boot,
        hostname="gpu01",
        wall_time_ns=boot_wall + int(t_s * S),
        boottime_ns=int(t_s * S),
        clock_ticks_per_second=HZ,
        logical_cpus=8,
        processes=processes,
        gpus=tuple(Gpu(uuid, n, "NVIDIA A100", 80 << 30, 0, 0, 40, 100_000) for n, uuid in enumerate((GPU0, GPU1))),
        gpu_processes=tuple(
            GpuProcess(GPU1 if g == MIG else g, pid, mem, device_uuid=g) for g, pid, mem in gpu_processes
        ),
        accounting=accounting,
        mig_shares=MappingProxyType({MIG: (3, 7)}),
        mig_parents=MappingProxyType({MIG: GPU1}),
        user_cpu=None if user_cpu is None else tuple(
            UserCpu(uid, f"u{uid}", int(v * S)) for uid, v in user_cpu.items()
        ),
        hardware=MappingProxyType({}),
        degraded=(),
        sha256="0" * 64,
    )


def ended(gpu: str, pid: int, start_s: float, ran_s: float, memory: int | None = 1 << 30) -> AccountingRecord:
    """NVML accounting for a process that started at boot-clock ``start_s`` and ran ``ran_s`` on ``gpu``."""
    return AccountingRecord(gpu_uuid=gpu, pid=pid, start_time_us=(BOOT_WALL + int(start_s * S)) // 1000,
                            gpu_time_ms=int(ran_s * 1000), max_memory_bytes=memory, is_running=False)


def to_document(s: Sample) -> dict[str, object]:
    """The schema-v1 document (docs/sample-schema.json) a node would print for ``s``."""
    return {
        "schema_version": 1, "probe_version": "0.1.0",
        "node": {"machine_id": s.machine_id, "boot_id": s.boot_id, "hostname": s.hostname, "kernel": "6.1.0",
                 "wall_time_ns": s.wall_time_ns, "monotonic_ns": s.boottime_ns, "boottime_ns": s.boottime_ns,
                 "boot_time": (s.wall_time_ns - s.boottime_ns) // S, "clock_ticks_per_second": s.clock_ticks_per_second,
                 "page_size": 4096, "uid_min": 1000},
        "hardware": {"cpu": {"model": "x", "logical_cpus": s.logical_cpus, "physical_cores": s.logical_cpus,
                             "sockets": 1},
                     "memory": {"total_bytes": 1 << 36, "available_bytes": 1 << 35}, "disks": [], "nvidia": None},
        "gpus": [{"index": g.index, "uuid": g.uuid, "name": g.name, "memory_total_bytes": g.memory_total_bytes,
                  "memory_used_bytes": g.memory_used_bytes, "mig_mode": "disabled", "accounting_mode": False,
                  "utilization_gpu_percent": g.utilization_percent, "utilization_memory_percent": 0,
                  "temperature_c": g.temperature_c, "power_mw": g.power_mw, "ecc_volatile_corrected": 0,
                  "ecc_volatile_uncorrected": 0, "mig_devices": []} for g in s.gpus],
        "gpu_processes": [{"gpu_uuid": p.gpu_uuid, "device_uuid": p.device_uuid or p.gpu_uuid, "pid": p.pid,
                           "type": "compute", "used_memory_bytes": p.used_memory_bytes, "start_ticks": p.start_ticks,
                           "uid": p.uid, "user": p.user} for p in s.gpu_processes],
        "gpu_accounting": [{"gpu_uuid": a.gpu_uuid, "pid": a.pid, "start_time_us": a.start_time_us,
                            "gpu_time_ms": a.gpu_time_ms, "gpu_utilization_percent": 0, "memory_utilization_percent": 0,
                            "max_memory_bytes": a.max_memory_bytes, "is_running": a.is_running} for a in s.accounting],
        "process_count": len(s.processes),
        "processes": [{"pid": p.pid, "ppid": 1, "uid": p.uid, "user": p.user, "start_ticks": p.start_ticks,
                       "create_time_ms": (s.wall_time_ns - s.boottime_ns) // 1_000_000
                       + p.start_ticks * 1000 // s.clock_ticks_per_second,
                       "state": "S", "cpu_user_ticks": p.cpu_ticks, "cpu_system_ticks": 0, "rss_bytes": p.rss_bytes,
                       "name": "job"} for p in s.processes],
        "user_cpu": [{"uid": u.uid, "user": u.user, "usage_ns": u.usage_ns, "source": "cgroup-v2"}
                     for u in s.user_cpu or ()],
        "degraded": [] if s.user_cpu is not None else [
            {"source": "user_cpu", "reason": "no_user_slices", "detail": ""}
        ],
    }
