"""A node's sample (docs/sample.md), parsed into immutable records: the only facts usage is computed from.

Output from a node is untrusted input. The parser checks every field it uses (type, range) and refuses
the whole document with ``BadSample`` naming the path of the first problem; it never coerces. Strings
from the node (user names, GPU names, hostnames) are kept as data and escaped wherever they are shown.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

MAX_SAMPLE_BYTES = 16 << 20
SCHEMA_VERSION = 1
_MAX_INT = 2**64


class BadSample(ValueError):
    """The sample is not usable; ``path`` says where (e.g. ``processes[3].start_ticks``)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


@dataclass(frozen=True)
class Process:
    pid: int
    start_ticks: int
    uid: int
    user: str | None
    cpu_ticks: int
    rss_bytes: int


@dataclass(frozen=True)
class Gpu:
    uuid: str
    index: int
    name: str | None
    memory_total_bytes: int | None
    memory_used_bytes: int | None
    utilization_percent: int | None
    temperature_c: int | None
    power_mw: int | None


@dataclass(frozen=True)
class GpuProcess:
    """A process holding a GPU; its identity and owner as /proc told the probe (None if it just exited)."""

    gpu_uuid: str
    pid: int
    used_memory_bytes: int | None
    device_uuid: str = ""
    start_ticks: int | None = None
    uid: int | None = None
    user: str | None = None


@dataclass(frozen=True)
class AccountingRecord:
    """NVML accounting for one process on one GPU (``gpu_time_ms`` is 0 while it runs)."""

    gpu_uuid: str
    pid: int
    start_time_us: int
    gpu_time_ms: int
    max_memory_bytes: int | None
    is_running: bool


@dataclass(frozen=True)
class UserCpu:
    """A user slice's cumulative CPU time (cgroup), which still counts processes that have ended."""

    uid: int
    user: str | None
    usage_ns: int


@dataclass(frozen=True)
class Sample:
    machine_id: str | None
    boot_id: str
    hostname: str
    wall_time_ns: int
    boottime_ns: int
    clock_ticks_per_second: int
    logical_cpus: int
    processes: tuple[Process, ...]
    gpus: tuple[Gpu, ...]
    gpu_processes: tuple[GpuProcess, ...]
    accounting: tuple[AccountingRecord, ...]
    user_cpu: tuple[UserCpu, ...] | None
    # MIG device uuid -> (its slices, the GPU's total slices): the share of its GPU it stands for.
    mig_shares: Mapping[str, tuple[int, int]]
    # MIG device uuid -> its physical GPU's uuid.
    mig_parents: Mapping[str, str]
    hardware: Mapping[str, Any]
    degraded: tuple[str, ...]
    sha256: str

    @property
    def idem_key(self) -> str:
        """machine-id / boot-id / probe time (the boot clock), unique per probe run."""
        return f"{self.machine_id or '-'}/{self.boot_id}/{self.boottime_ns}"

    def start_ns(self, process: Process) -> int:
        """When ``process`` started, on this boot's clock (ns since boot)."""
        return process.start_ticks * 1_000_000_000 // self.clock_ticks_per_second

    def wall_to_boot_ns(self, wall_ns: int) -> int:
        """A node wall-clock time on this boot's clock, through this sample's own pair of readings."""
        return wall_ns - (self.wall_time_ns - self.boottime_ns)


class _Reader:
    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document = document

    def node(self, path: str) -> Any:
        value: Any = self.document
        for part in path.split("."):
            if not isinstance(value, Mapping) or part not in value:
                raise BadSample(path, "missing")
            value = value[part]
        return value

    @staticmethod
    def integer(path: str, value: Any, *, optional: bool = False, low: int = 0) -> Any:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value < _MAX_INT:
            raise BadSample(path, f"expected an integer >= {low}, got {value!r:.60}")
        return value

    @staticmethod
    def text(path: str, value: Any, *, optional: bool = False, limit: int = 1024) -> Any:
        if value is None and optional:
            return None
        if not isinstance(value, str) or len(value) > limit:
            raise BadSample(path, f"expected a string of at most {limit} characters")
        return value

    def rows(self, path: str) -> list[Mapping[str, Any]]:
        value = self.node(path)
        if not isinstance(value, list) or not all(isinstance(row, Mapping) for row in value):
            raise BadSample(path, "expected a list of objects")
        return value


def parse_sample(stdout: bytes) -> Sample:
    """The ``sample`` verb's output as a ``Sample``; raises ``BadSample`` for anything unusable."""
    if len(stdout) > MAX_SAMPLE_BYTES:
        raise BadSample("$", f"larger than {MAX_SAMPLE_BYTES} bytes")
    if b"\\u0000" in stdout:
        raise BadSample("$", "contains a NUL character, which the evidence store (jsonb) cannot keep")
    try:
        document = json.loads(stdout)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadSample("$", f"not JSON: {exc}") from None
    if not isinstance(document, Mapping):
        raise BadSample("$", "not a JSON object")
    return sample_from_document(document, hashlib.sha256(stdout).hexdigest())


def sample_from_document(document: Mapping[str, Any], sha256: str) -> Sample:
    r = _Reader(document)
    if r.node("schema_version") != SCHEMA_VERSION:
        raise BadSample("schema_version", f"this controller reads version {SCHEMA_VERSION} only")
    i, s = r.integer, r.text
    processes = tuple(
        Process(
            pid=i(f"processes[{n}].pid", row.get("pid"), low=1),
            start_ticks=i(f"processes[{n}].start_ticks", row.get("start_ticks")),
            uid=i(f"processes[{n}].uid", row.get("uid")),
            user=s(f"processes[{n}].user", row.get("user"), optional=True, limit=256),
            cpu_ticks=i(f"processes[{n}].cpu_user_ticks", row.get("cpu_user_ticks"))
            + i(f"processes[{n}].cpu_system_ticks", row.get("cpu_system_ticks")),
            rss_bytes=i(f"processes[{n}].rss_bytes", row.get("rss_bytes")),
        )
        for n, row in enumerate(r.rows("processes"))
    )
    gpus = tuple(
        Gpu(
            uuid=s(f"gpus[{n}].uuid", row.get("uuid"), limit=128),
            index=i(f"gpus[{n}].index", row.get("index")),
            name=s(f"gpus[{n}].name", row.get("name"), optional=True, limit=256),
            memory_total_bytes=i(f"gpus[{n}].memory_total_bytes", row.get("memory_total_bytes"), optional=True),
            memory_used_bytes=i(f"gpus[{n}].memory_used_bytes", row.get("memory_used_bytes"), optional=True),
            utilization_percent=i(f"gpus[{n}].utilization_gpu_percent", row.get("utilization_gpu_percent"),
                                  optional=True),
            temperature_c=i(f"gpus[{n}].temperature_c", row.get("temperature_c"), optional=True, low=-(2**31)),
            power_mw=i(f"gpus[{n}].power_mw", row.get("power_mw"), optional=True),
        )
        for n, row in enumerate(r.rows("gpus"))
    )
    gpu_processes = tuple(
        GpuProcess(
            gpu_uuid=s(f"gpu_processes[{n}].gpu_uuid", row.get("gpu_uuid"), limit=128),
            pid=i(f"gpu_processes[{n}].pid", row.get("pid"), low=1),
            used_memory_bytes=i(f"gpu_processes[{n}].used_memory_bytes", row.get("used_memory_bytes"), optional=True),
            device_uuid=s(f"gpu_processes[{n}].device_uuid", row.get("device_uuid", row.get("gpu_uuid")), limit=128),
            start_ticks=i(f"gpu_processes[{n}].start_ticks", row.get("start_ticks"), optional=True),
            uid=i(f"gpu_processes[{n}].uid", row.get("uid"), optional=True),
            user=s(f"gpu_processes[{n}].user", row.get("user"), optional=True, limit=256),
        )
        for n, row in enumerate(r.rows("gpu_processes"))
    )
    accounting = tuple(
        AccountingRecord(
            gpu_uuid=s(f"gpu_accounting[{n}].gpu_uuid", row.get("gpu_uuid"), limit=128),
            pid=i(f"gpu_accounting[{n}].pid", row.get("pid"), low=1),
            start_time_us=i(f"gpu_accounting[{n}].start_time_us", row.get("start_time_us")),
            gpu_time_ms=i(f"gpu_accounting[{n}].gpu_time_ms", row.get("gpu_time_ms")),
            max_memory_bytes=i(f"gpu_accounting[{n}].max_memory_bytes", row.get("max_memory_bytes"), optional=True),
            is_running=row.get("is_running") is True,
        )
        for n, row in enumerate(r.rows("gpu_accounting"))
    )
    degraded = tuple(
        s(f"degraded[{n}].source", row.get("source"), limit=256) for n, row in enumerate(r.rows("degraded"))
    )
    # A partly readable cgroup section is not used at all: one missing slice would otherwise look new.
    user_cpu: tuple[UserCpu, ...] | None = None
    if "user_cpu" not in degraded:
        user_cpu = tuple(
            UserCpu(
                uid=i(f"user_cpu[{n}].uid", row.get("uid")),
                user=s(f"user_cpu[{n}].user", row.get("user"), optional=True, limit=256),
                usage_ns=i(f"user_cpu[{n}].usage_ns", row.get("usage_ns")),
            )
            for n, row in enumerate(r.rows("user_cpu"))
        )
    mig_shares: dict[str, tuple[int, int]] = {}
    mig_parents: dict[str, str] = {}
    for n, gpu_row in enumerate(r.rows("gpus")):
        for m, mig in enumerate(gpu_row.get("mig_devices") or []):
            where = f"gpus[{n}].mig_devices[{m}]"
            uuid = s(f"{where}.uuid", mig.get("uuid"), limit=128)
            mig_parents[uuid] = gpu_row["uuid"]
            slices = i(f"{where}.slice_count", mig.get("slice_count"), optional=True, low=1)
            total = i(f"{where}.total_slices", mig.get("total_slices"), optional=True, low=1)
            if slices is not None and total is not None and slices <= total:
                mig_shares[uuid] = (slices, total)
    hardware = dict(r.node("hardware")) if isinstance(r.node("hardware"), Mapping) else {}
    hardware["kernel"] = s("node.kernel", r.node("node.kernel"), optional=True)
    hardware["hostname"] = s("node.hostname", r.node("node.hostname"), limit=256)
    cpus = r.node("hardware.cpu.logical_cpus")
    return Sample(
        machine_id=s("node.machine_id", r.node("node.machine_id"), optional=True, limit=64),
        boot_id=s("node.boot_id", r.node("node.boot_id"), limit=64),
        hostname=s("node.hostname", r.node("node.hostname"), limit=256),
        wall_time_ns=i("node.wall_time_ns", r.node("node.wall_time_ns")),
        boottime_ns=i("node.boottime_ns", r.node("node.boottime_ns")),
        clock_ticks_per_second=i("node.clock_ticks_per_second", r.node("node.clock_ticks_per_second"), low=1),
        # Unknown CPU count: quotas are compared as if on one CPU, the strictest reading.
        logical_cpus=1 if cpus is None else i("hardware.cpu.logical_cpus", cpus, low=1),
        processes=processes,
        gpus=gpus,
        gpu_processes=gpu_processes,
        accounting=accounting,
        user_cpu=user_cpu,
        mig_shares=MappingProxyType(mig_shares),
        mig_parents=MappingProxyType(mig_parents),
        hardware=MappingProxyType(hardware),
        degraded=degraded,
        sha256=sha256,
    )
