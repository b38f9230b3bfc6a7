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
from typing import Any, NamedTuple

MAX_SAMPLE_BYTES = 16 << 20
SCHEMA_VERSION = 1
_MAX_INT = 2**64


class BadSample(ValueError):
    """The sample is not usable; ``path`` says where (e.g. ``processes[3].start_ticks``)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


# The rows of a sample are named tuples rather than frozen dataclasses: just as immutable, and built several
# times faster, which counts at a thousand samples of dozens of rows a tick.
class Process(NamedTuple):
    pid: int
    start_ticks: int
    uid: int
    user: str | None
    cpu_ticks: int
    rss_bytes: int


@dataclass(frozen=True)
class Gpu:  # a few per sample; as a named tuple its `index` field would shadow tuple.index
    uuid: str
    index: int
    name: str | None
    memory_total_bytes: int | None
    memory_used_bytes: int | None
    utilization_percent: int | None
    temperature_c: int | None
    power_mw: int | None


class GpuProcess(NamedTuple):
    """A process holding a GPU; its identity and owner as /proc told the probe (None if it just exited)."""

    gpu_uuid: str
    pid: int
    used_memory_bytes: int | None
    device_uuid: str = ""
    start_ticks: int | None = None
    uid: int | None = None
    user: str | None = None


class AccountingRecord(NamedTuple):
    """NVML accounting for one process on one GPU (``gpu_time_ms`` is 0 while it runs)."""

    gpu_uuid: str
    pid: int
    start_time_us: int
    gpu_time_ms: int
    max_memory_bytes: int | None
    is_running: bool


class UserCpu(NamedTuple):
    """A user slice's cumulative CPU time (cgroup), which still counts processes that have ended."""

    uid: int
    user: str | None
    usage_ns: int
    outside: int = 0  # the uid's processes outside the counted group (accounting groups; slices: not reported)


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
    # Names in the node's GPU-request drop box and holding place (None: unknown, an older probe or unlistable):
    # the queue reads the box only where this is not 0.
    gpu_requests_waiting: int | None = None

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


def _path(where: str, n: int | None, key: str) -> str:
    return f"{where}.{key}" if n is None else f"{where}[{n}].{key}"


# The checks below run for every field of every row of a thousand samples a tick: the happy path is one
# type test and a comparison, and the path of a problem is spelled out only once there is one.
def _int(row: Mapping[str, Any], key: str, where: str, n: int | None = None, *, low: int = 0,
         optional: bool = False) -> Any:
    value = row.get(key)
    if type(value) is int and low <= value < _MAX_INT:  # exactly int: a JSON true is no integer here
        return value
    if value is None and optional:
        return None
    raise BadSample(_path(where, n, key), f"expected an integer >= {low}, got {value!r:.60}")


def _str(row: Mapping[str, Any], key: str, where: str, n: int | None = None, *, limit: int = 1024,
         optional: bool = False) -> Any:
    value = row.get(key)
    if type(value) is str and len(value) <= limit:
        return value
    if value is None and optional:
        return None
    raise BadSample(_path(where, n, key), f"expected a string of at most {limit} characters")


def _section(document: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = document.get(key)
    if not isinstance(value, Mapping):
        raise BadSample(key, "missing" if value is None else "expected an object")
    return value


def _rows(document: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = document.get(key)
    if value is None:
        raise BadSample(key, "missing")
    if type(value) is not list or not all(isinstance(row, Mapping) for row in value):
        raise BadSample(key, "expected a list of objects")
    return value


def parse_sample(stdout: bytes) -> Sample:
    """The ``sample`` verb's output as a ``Sample``; raises ``BadSample`` for anything unusable."""
    if len(stdout) > MAX_SAMPLE_BYTES:
        raise BadSample("$", f"larger than {MAX_SAMPLE_BYTES} bytes")
    if b"\\u0000" in stdout:
        raise BadSample("$", "contains a NUL character, which the evidence store (jsonb) cannot keep")
    try:
        document = json.loads(stdout, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadSample("$", f"not JSON: {exc}") from None
    if not isinstance(document, Mapping):
        raise BadSample("$", "not a JSON object")
    # json.loads lets a lone UTF-16 surrogate through (escaped, or raw: it decodes bytes with surrogatepass);
    # PostgreSQL refuses it, and one such sample would fail the whole batch it is stored with.
    if (b"\\ud" in stdout or b"\\uD" in stdout or b"\xed" in stdout) and _has_lone_surrogate(document):
        raise BadSample("$", "contains a lone UTF-16 surrogate, which the evidence store (jsonb) cannot keep")
    return sample_from_document(document, hashlib.sha256(stdout).hexdigest())


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    return False


def _process(row: Mapping[str, Any]) -> Process | None:
    """A well-formed process row in one pass (the common case: hundreds per sample, a thousand samples a tick),
    or None, and then ``_checked_process`` names the problem."""
    pid, start, uid, user = row.get("pid"), row.get("start_ticks"), row.get("uid"), row.get("user")
    user_ticks, system_ticks, rss = row.get("cpu_user_ticks"), row.get("cpu_system_ticks"), row.get("rss_bytes")
    if (type(pid) is int and type(start) is int and type(uid) is int and type(user_ticks) is int
            and type(system_ticks) is int and type(rss) is int
            and 1 <= pid < _MAX_INT and 0 <= start < _MAX_INT and 0 <= uid < _MAX_INT and 0 <= user_ticks < _MAX_INT
            and 0 <= system_ticks < _MAX_INT and 0 <= rss < _MAX_INT
            and (user is None or (type(user) is str and len(user) <= 256))):
        return Process(pid, start, uid, user, user_ticks + system_ticks, rss)
    return None


def _checked_process(row: Mapping[str, Any], n: int) -> Process:
    return Process(
        pid=_int(row, "pid", "processes", n, low=1),
        start_ticks=_int(row, "start_ticks", "processes", n),
        uid=_int(row, "uid", "processes", n),
        user=_str(row, "user", "processes", n, optional=True, limit=256),
        cpu_ticks=_int(row, "cpu_user_ticks", "processes", n) + _int(row, "cpu_system_ticks", "processes", n),
        rss_bytes=_int(row, "rss_bytes", "processes", n),
    )


# Keys the node section must have, even where their value may be null (a missing key is a broken probe).
_NODE_KEYS = ("machine_id", "boot_id", "hostname", "kernel", "wall_time_ns", "boottime_ns", "clock_ticks_per_second")


def sample_from_document(document: Mapping[str, Any], sha256: str) -> Sample:
    if document.get("schema_version") != SCHEMA_VERSION:
        raise BadSample("schema_version", f"this controller reads version {SCHEMA_VERSION} only")
    node = _section(document, "node")
    for key in _NODE_KEYS:
        if key not in node:
            raise BadSample(f"node.{key}", "missing")
    hardware = dict(_section(document, "hardware"))
    cpu = hardware.get("cpu")
    if not isinstance(cpu, Mapping) or "logical_cpus" not in cpu:
        raise BadSample("hardware.cpu.logical_cpus", "missing")
    processes = tuple(_process(row) or _checked_process(row, n) for n, row in enumerate(_rows(document, "processes")))
    gpu_rows = _rows(document, "gpus")
    gpus = tuple(
        Gpu(
            uuid=_str(row, "uuid", "gpus", n, limit=128),
            index=_int(row, "index", "gpus", n),
            name=_str(row, "name", "gpus", n, optional=True, limit=256),
            memory_total_bytes=_int(row, "memory_total_bytes", "gpus", n, optional=True),
            memory_used_bytes=_int(row, "memory_used_bytes", "gpus", n, optional=True),
            utilization_percent=_int(row, "utilization_gpu_percent", "gpus", n, optional=True),
            temperature_c=_int(row, "temperature_c", "gpus", n, optional=True, low=-(2**31)),
            power_mw=_int(row, "power_mw", "gpus", n, optional=True),
        )
        for n, row in enumerate(gpu_rows)
    )
    gpu_processes = tuple(
        GpuProcess(
            gpu_uuid=_str(row, "gpu_uuid", "gpu_processes", n, limit=128),
            pid=_int(row, "pid", "gpu_processes", n, low=1),
            used_memory_bytes=_int(row, "used_memory_bytes", "gpu_processes", n, optional=True),
            device_uuid=_str(row, "device_uuid" if "device_uuid" in row else "gpu_uuid", "gpu_processes", n,
                             limit=128),
            start_ticks=_int(row, "start_ticks", "gpu_processes", n, optional=True),
            uid=_int(row, "uid", "gpu_processes", n, optional=True),
            user=_str(row, "user", "gpu_processes", n, optional=True, limit=256),
        )
        for n, row in enumerate(_rows(document, "gpu_processes"))
    )
    accounting = tuple(
        AccountingRecord(
            gpu_uuid=_str(row, "gpu_uuid", "gpu_accounting", n, limit=128),
            pid=_int(row, "pid", "gpu_accounting", n, low=1),
            start_time_us=_int(row, "start_time_us", "gpu_accounting", n),
            gpu_time_ms=_int(row, "gpu_time_ms", "gpu_accounting", n),
            max_memory_bytes=_int(row, "max_memory_bytes", "gpu_accounting", n, optional=True),
            is_running=row.get("is_running") is True,
        )
        for n, row in enumerate(_rows(document, "gpu_accounting"))
    )
    degraded = tuple(_str(row, "source", "degraded", n, limit=256) for n, row in enumerate(_rows(document, "degraded")))
    # A partly readable cgroup section is not used at all: one missing slice would otherwise look new.
    user_cpu: tuple[UserCpu, ...] | None = None
    if "user_cpu" not in degraded:
        user_cpu = tuple(
            UserCpu(
                uid=_int(row, "uid", "user_cpu", n),
                user=_str(row, "user", "user_cpu", n, optional=True, limit=256),
                usage_ns=_int(row, "usage_ns", "user_cpu", n),
                outside=_int(row, "outside", "user_cpu", n, optional=True) or 0,
            )
            for n, row in enumerate(_rows(document, "user_cpu"))
        )
    mig_shares: dict[str, tuple[int, int]] = {}
    mig_parents: dict[str, str] = {}
    for n, gpu_row in enumerate(gpu_rows):
        for m, mig in enumerate(gpu_row.get("mig_devices") or []):
            where = f"gpus[{n}].mig_devices"
            uuid = _str(mig, "uuid", where, m, limit=128)
            mig_parents[uuid] = gpu_row["uuid"]
            slices = _int(mig, "slice_count", where, m, optional=True, low=1)
            total = _int(mig, "total_slices", where, m, optional=True, low=1)
            if slices is not None and total is not None and slices <= total:
                mig_shares[uuid] = (slices, total)
    hardware["kernel"] = _str(node, "kernel", "node", optional=True)
    hardware["hostname"] = _str(node, "hostname", "node", limit=256)
    return Sample(
        machine_id=_str(node, "machine_id", "node", optional=True, limit=64),
        boot_id=_str(node, "boot_id", "node", limit=64),
        hostname=hardware["hostname"],
        wall_time_ns=_int(node, "wall_time_ns", "node"),
        boottime_ns=_int(node, "boottime_ns", "node"),
        clock_ticks_per_second=_int(node, "clock_ticks_per_second", "node", low=1),
        # Unknown CPU count: quotas are compared as if on one CPU, the strictest reading.
        logical_cpus=1 if cpu["logical_cpus"] is None else _int(cpu, "logical_cpus", "hardware.cpu", low=1),
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
        gpu_requests_waiting=_int(document, "gpu_requests_waiting", "$", optional=True),
    )
