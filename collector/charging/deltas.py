"""Usage between two samples of one node: a pure function of (last charged sample, new sample, settings).

All arithmetic is in integer nanoseconds of the node's boot clock (``boottime_ns``), never wall time, so
durations are monotonic and a skewed or stepped node clock cannot make them negative or overlap.

CPU (core-seconds), per uid:
  * a user slice's cumulative cgroup counter when both samples have the cgroup section (it still counts
    processes that ended in between); a counter that went down (the slice was recreated) restarts from 0;
  * otherwise per process, identified by ``(pid, start_ticks)`` so a reused PID is a new process: the
    delta of utime+stime, or all of it for a process that started after the baseline. What a process
    used between the baseline and its exit is then unknown and flagged.

GPU (gpu-seconds), per device: each process holds its GPU from ``max(baseline, its start)`` to the new
sample while it runs; one that ended holds it until its end as NVML accounting reports it (without
accounting, until the baseline only, the rest recorded as unaccounted). Time on a device is swept into
segments; in each, the users holding the device share it by GPU memory (or equally), so one GPU-second
is never billed twice. Shares are whole nanoseconds by largest remainder, summing exactly to the segment.
Sampled presence is charged for at most ``max_gap_s`` before the new sample; the rest is unaccounted.
Each device's busy time (the union of its non-root holds: the boot-clock spans in which a user was charged for
it) is kept with the result, so a granted GPU's reservation charges exactly the rest
(collector.charging.reservation). Root's holds are left out, as the queue leaves them out: they are the driver's
helpers (Xorg, nvidia-persistenced), on every GPU of some nodes all day, and would make every held GPU busy.

Memory (GiB-seconds), per uid, from the sampled resident set sizes (``rss_bytes``, summed over the uid's
processes) by the trapezoid rule: ``(rss at the baseline + rss now) / 2 x the interval``, where a uid with
no process at the baseline had 0 then (and every uid had 0 at boot). Integers only: byte-nanoseconds are
rounded down to whole GiB-nanoseconds (1e-9 GiB-s, so at most that little is dropped per record). It is
capped by ``max_gap_s`` like sampled GPU presence. Method ``rss-sampled``.

A new boot restarts every counter at 0 (the interval begins at boot); what ran between the last sample
of the old boot and its end is unaccounted. The first sample of a node is only a baseline.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Literal, get_args

from collector.charging.samples import GpuProcess, Process, Sample

NS = 1_000_000_000
GIB = 1 << 30
# How a GPU's time is shared among the users holding it at once: by their GPU memory, or equally.
GpuSplit = Literal["memory", "equal"]
GPU_SPLITS: tuple[GpuSplit, ...] = get_args(GpuSplit)


@dataclass(frozen=True)
class UsageSettings:
    max_gap_s: int = 3600
    gpu_split: GpuSplit = "memory"


@dataclass(frozen=True)
class Usage:
    """What one Linux user consumed in the interval (``amount_ns``: core-, GPU- or GiB-nanoseconds)."""

    uid: int
    linux_user: str
    resource: str
    device: str
    model: str
    amount_ns: int
    method: str
    pids: tuple[int, ...] = ()

    @property
    def seconds(self) -> Decimal:
        return seconds_of(self.amount_ns)


@dataclass(frozen=True)
class Gap:
    """Usage that could not be measured; ``seconds`` is an upper bound (wall or resource seconds)."""

    reason: str
    seconds: Decimal
    detail: str = ""


@dataclass(frozen=True)
class UsageResult:
    start_ns: int
    end_ns: int
    usages: tuple[Usage, ...] = ()
    gaps: tuple[Gap, ...] = ()
    flags: tuple[str, ...] = ()
    advance: bool = True  # False: the sample is not newer than the baseline; keep the baseline
    # Where sampled presence is charged from: start_ns, or later where max_gap_s capped it (None: no interval).
    measured_from_ns: int | None = None
    # Per device uuid (a GPU's or a MIG device's): the disjoint, sorted [from, to) boot-clock spans in which a
    # non-root user was charged for it.
    busy: Mapping[str, tuple[tuple[int, int], ...]] = field(default_factory=lambda: MappingProxyType({}))


def _name(uid: int, user: str | None) -> str:
    return user if user else f"uid-{uid}"


def compute(prev: Sample | None, cur: Sample, settings: UsageSettings) -> UsageResult:
    """The usage in ``cur`` not yet charged by ``prev`` (the last charged sample of the same node). Memory is
    always measured: whether it is charged is the ledger's rule (it skips what no price covers)."""
    if prev is None:
        return UsageResult(cur.boottime_ns, cur.boottime_ns, flags=("first_sample",))
    if prev.machine_id != cur.machine_id:
        return UsageResult(cur.boottime_ns, cur.boottime_ns, flags=("machine_changed",))
    flags: list[str] = []
    gaps: list[Gap] = []
    if prev.boot_id == cur.boot_id:
        if cur.boottime_ns <= prev.boottime_ns:
            return UsageResult(prev.boottime_ns, prev.boottime_ns, flags=("not_newer",), advance=False)
        base: Sample | None = prev
        start = prev.boottime_ns
    else:
        base, start = None, 0
        flags.append("reboot")
        boot_wall = cur.wall_time_ns - cur.boottime_ns
        lost = max(0, boot_wall - prev.wall_time_ns)
        gaps.append(Gap("reboot", seconds_of(lost), f"after the last sample of boot {prev.boot_id}"))
    end = cur.boottime_ns
    floor = max(start, end - settings.max_gap_s * NS)
    if floor > start:
        gaps.append(Gap("gap_over_max", seconds_of(floor - start),
                        f"sampled GPU presence and memory are charged for at most {settings.max_gap_s} s"))
    cpu = _cpu(base, cur, flags)
    gpu, busy = _gpu(base, cur, start, floor, end, settings, gaps)
    rss = _memory(base, cur, end - floor)
    return UsageResult(start, end, tuple(cpu + gpu + rss), tuple(gaps), tuple(flags), measured_from_ns=floor,
                       busy=MappingProxyType(busy))


def _cpu(base: Sample | None, cur: Sample, flags: list[str]) -> list[Usage]:
    usages: list[Usage] = []
    covered: set[int] = set()
    use_cgroup = cur.user_cpu is not None and (base is None or base.user_cpu is not None)
    if use_cgroup:
        assert cur.user_cpu is not None
        before = {row.uid: row.usage_ns for row in base.user_cpu or ()} if base is not None else {}
        # A counter covers an interval only if its group held every process of the uid at both ends; else
        # (a session the hook missed, until the controller moves it in) the uid is charged per process.
        strays = {row.uid for row in (*(base.user_cpu or () if base is not None else ()), *cur.user_cpu) if row.outside}
        for row in cur.user_cpu:
            if row.uid in strays:
                flags.append(f"cpu_outside_counter:{row.uid}")
                continue
            covered.add(row.uid)
            previous = before.get(row.uid, 0)
            if row.usage_ns < previous:
                flags.append(f"cpu_counter_reset:{row.uid}")
                previous = 0
            if row.usage_ns > previous:
                usages.append(Usage(row.uid, _name(row.uid, row.user), "cpu", "", "", row.usage_ns - previous,
                                    "cgroup-cpu-counter"))
    ticks_before = {(p.pid, p.start_ticks): p.cpu_ticks for p in base.processes} if base is not None else {}
    per_uid: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    names: dict[int, str] = {}
    pids: dict[int, list[int]] = defaultdict(list)
    base_ns = base.boottime_ns if base is not None else 0
    for process in cur.processes:
        if process.uid in covered:
            continue
        names[process.uid] = _name(process.uid, process.user)
        key = (process.pid, process.start_ticks)
        if key in ticks_before:
            delta = process.cpu_ticks - ticks_before[key]
        elif cur.start_ns(process) >= base_ns:
            delta = process.cpu_ticks
        else:
            flags.append(f"unseen_process:{process.pid}")
            continue
        if delta > 0:
            per_uid[process.uid][0] += delta
            pids[process.uid].append(process.pid)
    if base is not None:
        alive = {(p.pid, p.start_ticks) for p in cur.processes}
        if any(p.uid not in covered and (p.pid, p.start_ticks) not in alive for p in base.processes):
            flags.append("process_cpu_after_exit_unmetered")
    for uid, (ticks, _) in sorted(per_uid.items()):
        # ticks / clock_ticks_per_second seconds, exact in ns for the usual 100 Hz (and any divisor of 1e9).
        amount = ticks * NS // cur.clock_ticks_per_second
        usages.append(Usage(uid, names[uid], "cpu", "", "", amount, "proc-cpu-ticks", tuple(sorted(pids[uid]))))
    return usages


def _weight(memory_bytes: int | None) -> int:
    """A hold's weight for the memory split; -1 when NVML did not report the memory (then: equal split)."""
    return -1 if memory_bytes is None else memory_bytes


@dataclass
class _Hold:
    """One user's process holding one device over ``[start, end)`` with a memory weight."""

    uid: int
    user: str
    pid: int
    start: int
    end: int
    weight: int
    method: str


def _hold(process: Process, gp: GpuProcess, begin: int, stop: int, method: str) -> _Hold:
    return _Hold(process.uid, _name(process.uid, process.user), gp.pid, begin, stop, _weight(gp.used_memory_bytes),
                 method)


@dataclass
class _Device:
    holds: list[_Hold] = field(default_factory=list)


def seconds_of(ns: int) -> Decimal:
    """Nanoseconds as exact decimal seconds."""
    return Decimal(ns).scaleb(-9)


def _memory(base: Sample | None, cur: Sample, duration: int) -> list[Usage]:
    """Each uid's RSS integrated over ``duration`` by the trapezoid rule, in whole GiB-nanoseconds."""
    earlier = base.processes if base is not None else ()
    before, after = _rss_by_uid(earlier), _rss_by_uid(cur.processes)
    names = {p.uid: _name(p.uid, p.user) for p in (*earlier, *cur.processes)}
    pids: dict[int, list[int]] = defaultdict(list)
    for process in cur.processes:
        pids[process.uid].append(process.pid)
    usages = []
    for uid in sorted(names):
        amount = (before.get(uid, 0) + after.get(uid, 0)) * duration // (2 * GIB)
        if amount > 0:
            usages.append(Usage(uid, names[uid], "memory", "", "", amount, "rss-sampled", tuple(sorted(pids[uid]))))
    return usages


def _rss_by_uid(processes: tuple[Process, ...]) -> dict[int, int]:
    rss: dict[int, int] = defaultdict(int)
    for process in processes:
        rss[process.uid] += process.rss_bytes
    return rss


def _gpu(
    base: Sample | None, cur: Sample, start: int, floor: int, end: int, settings: UsageSettings, gaps: list[Gap]
) -> tuple[list[Usage], dict[str, tuple[tuple[int, int], ...]]]:
    procs = {p.pid: p for p in cur.processes}
    base_procs = {p.pid: p for p in base.processes} if base is not None else {}
    devices: dict[str, _Device] = defaultdict(_Device)
    running: set[tuple[str, int, int]] = set()
    for gp in cur.gpu_processes:
        process = _holder(gp, procs)
        if process is None:
            gaps.append(Gap("unattributed_gpu_process", seconds_of(end - floor), f"pid {gp.pid} on {gp.gpu_uuid}"))
            continue
        running.add((gp.gpu_uuid, gp.pid, process.start_ticks))
        begin = max(floor, cur.start_ns(process))
        if begin < end:
            devices[gp.device_uuid or gp.gpu_uuid].holds.append(_hold(process, gp, begin, end, "nvml-process-sampling"))
    finished = {(a.gpu_uuid, a.pid): a for a in cur.accounting if not a.is_running}
    used: set[tuple[str, int]] = set()
    if base is not None:
        for gp in base.gpu_processes:
            process = _holder(gp, base_procs)
            if process is None or (gp.gpu_uuid, gp.pid, process.start_ticks) in running:
                continue
            record = finished.get((gp.gpu_uuid, gp.pid))
            if record is None or record.start_time_us * 1000 < _created_wall_ns(base, process) - NS:
                gaps.append(Gap("gpu_process_ended_unmetered", seconds_of(end - start),
                                f"pid {gp.pid} on {gp.gpu_uuid}: no NVML accounting record"))
                continue
            used.add((gp.gpu_uuid, gp.pid))
            finish = cur.wall_to_boot_ns((record.start_time_us * 1000) + record.gpu_time_ms * 1_000_000)
            begin, stop = floor, min(end, finish)
            if begin < stop:
                devices[gp.device_uuid or gp.gpu_uuid].holds.append(_hold(process, gp, begin, stop, "nvml-accounting"))
    for (uuid, pid), record in finished.items():
        if (uuid, pid) in used:
            continue
        began = cur.wall_to_boot_ns(record.start_time_us * 1000)
        if began < start:
            continue  # it started before the baseline: the baseline already saw (and charged) it, or it predates us
        stop = min(end, began + record.gpu_time_ms * 1_000_000)
        owner = procs.get(pid) or base_procs.get(pid)
        if owner is None or cur.start_ns(owner) > began:
            gaps.append(Gap("unattributed_gpu_process", seconds_of(max(0, stop - began)),
                            f"pid {pid} on {uuid} ran and ended between samples; its owner is unknown"))
            continue
        begin = max(began, floor)
        if begin < stop:
            devices[uuid].holds.append(_Hold(owner.uid, _name(owner.uid, owner.user), pid, begin, stop,
                                             _weight(record.max_memory_bytes), "nvml-accounting"))
    models = {g.uuid: g.name or "unknown" for g in cur.gpus}
    models.update({mig: models.get(parent, "unknown") for mig, parent in cur.mig_parents.items()})
    usages: list[Usage] = []
    for uuid in sorted(devices):
        fraction = cur.mig_shares.get(uuid, (1, 1))
        usages.extend(_split_device(uuid, models.get(uuid, "unknown"), devices[uuid].holds, settings.gpu_split,
                                    fraction))
    return usages, {uuid: _union(device.holds) for uuid, device in devices.items()}


def _union(holds: list[_Hold]) -> tuple[tuple[int, int], ...]:
    """The spans the non-root holds cover, merged: the time ``_split_device`` shares out among users."""
    spans: list[tuple[int, int]] = []
    for begin, stop in sorted((h.start, h.end) for h in holds if h.uid != 0):
        if spans and begin <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], stop))
        else:
            spans.append((begin, stop))
    return tuple(spans)


def _holder(gp: GpuProcess, processes: dict[int, Process]) -> Process | None:
    """The process holding a GPU: the identity the probe attached to it, else the process scan's."""
    if gp.uid is not None and gp.start_ticks is not None:
        return Process(gp.pid, gp.start_ticks, gp.uid, gp.user, 0, 0)
    return processes.get(gp.pid)


def _created_wall_ns(sample: Sample, process: Process) -> int:
    return sample.wall_time_ns - sample.boottime_ns + sample.start_ns(process)


def _split_device(uuid: str, model: str, holds: list[_Hold], split: GpuSplit, fraction: tuple[int, int]) -> list[Usage]:
    """Sweep the device's time into segments and share each among the users holding it then.

    A MIG device bills ``slices / total_slices`` of its GPU's time at the GPU's price: each user's total
    is scaled by that exact fraction and rounded down to a whole nanosecond.
    """
    points = sorted({h.start for h in holds} | {h.end for h in holds})
    totals: dict[int, int] = defaultdict(int)
    names = {h.uid: h.user for h in holds}
    methods: dict[int, set[str]] = defaultdict(set)
    pids: dict[int, set[int]] = defaultdict(set)
    for left, right in zip(points, points[1:], strict=False):
        active = [h for h in holds if h.start <= left and right <= h.end]
        if not active:
            continue
        weights: dict[int, int] = defaultdict(int)
        by_memory = split == "memory" and all(h.weight >= 0 for h in active)
        for hold in active:
            weights[hold.uid] += hold.weight if by_memory else 0
            methods[hold.uid].add(hold.method)
            pids[hold.uid].add(hold.pid)
        for uid, share in share_ns(right - left, weights, names).items():
            totals[uid] += share
    return [
        Usage(uid, names[uid], "gpu", uuid, model, amount * fraction[0] // fraction[1],
              "+".join(sorted(methods[uid])), tuple(sorted(pids[uid])))
        for uid, amount in sorted(totals.items())
        if amount * fraction[0] // fraction[1] > 0
    ]


def share_ns(total: int, weights: dict[int, int], names: dict[int, str]) -> dict[int, int]:
    """``total`` split in proportion to ``weights`` (equally when they sum to 0), in whole units.

    Largest remainder: everyone gets the floor of their exact share, and the units left over go to the
    largest fractional parts, ties broken by user name then uid, so the shares always sum to ``total``.
    """
    if len(weights) == 1:  # the usual GPU, held by one user: nothing to share
        return dict.fromkeys(weights, total)
    weight_sum = sum(weights.values())
    effective = weights if weight_sum > 0 else dict.fromkeys(weights, 1)
    weight_sum = sum(effective.values())
    shares = {uid: total * w // weight_sum for uid, w in effective.items()}
    left = total - sum(shares.values())
    order = sorted(effective, key=lambda uid: (-(total * effective[uid] % weight_sum), names.get(uid, ""), uid))
    for uid in order[:left]:
        shares[uid] += 1
    return shares
