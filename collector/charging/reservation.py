"""The reservation charge of one sample's interval (docs/queue.md, "Money"): for each GPU the queue has granted on
the node, the time in the interval it was held and nobody was charged for using it. Pure.

Per lease, the held span is the lease's ``[start, end)`` clipped to the measured part of the interval (from
``UsageResult.measured_from_ns``: what ``max_gap_s`` leaves out is unaccounted for usage and reservation alike).
Grant times are the controller's clock; they are placed on the sample's boot clock from the interval's end (the
moment the sample arrived, as the records' ``interval_end``), so the held span and the usage's busy spans
(``UsageResult.busy``) are compared on one clock, to the microsecond. The reservation is the held span less every
span in which the GPU was charged as usage, to the holder or any other user: a GPU-second is either usage or
reservation, never both, and a holder who uses their GPU pays usage only. Root's processes (the driver's helpers)
do not make a held GPU busy, as they do not for the queue (``UsageResult.busy``). A MIG device's busy time counts
as its share of the GPU (slices / total slices, rounded down to a whole nanosecond, as its usage is).

One record per (holder, GPU) and interval: key and epoch like a usage record's with ``reservation`` as the
resource and the GPU's uuid as the device, the holder's billing user name as ``linux_user`` (ledger.tickplan
resolves it by name), the GPU's NVML name as the model (priced by the same patterns as ``gpu``). Quantities are
whole nanoseconds as exact decimal seconds; the money is the ledger's telescoping rating (ledger.rating: rounded
half up to a micro-unit on the epoch's cumulative quantity, so an epoch's charges add up to its rounded total).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta

from collector.charging.deltas import UsageResult, seconds_of
from collector.charging.samples import Sample
from collector.charging.to_ledger import interval, prefixes
from control.leases import Lease
from ledger.records import UNITS, UsageRecord

RESOURCE = "reservation"
METHOD = "queue-grant"
_MICROSECOND = timedelta(microseconds=1)


def reservation_records(node: str, sample: Sample, result: UsageResult, received_at: datetime,
                        leases: Sequence[Lease]) -> tuple[UsageRecord, ...]:
    """One record per (holder, GPU) of ``node``'s ``leases`` with held time nobody was charged for."""
    if result.measured_from_ns is None or not leases:
        return ()
    start, end = interval(result, received_at)
    epoch, key = prefixes(node, sample)
    gpus = {g.index: g for g in sample.gpus}

    def boot_ns(at: datetime) -> int:
        return result.end_ns - ((received_at - at) // _MICROSECOND) * 1000

    held: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])  # (holder, index) -> [held ns, used ns]
    requests: dict[tuple[str, int], set[int]] = defaultdict(set)
    for lease in leases:
        gpu = gpus.get(lease.index)
        if lease.node != node or gpu is None:
            continue  # a GPU the sample does not list was measured by nobody: nothing to set against
        lo = max(result.measured_from_ns, boot_ns(lease.start))
        hi = min(result.end_ns, boot_ns(lease.end))
        if lo >= hi:
            continue
        figures = held[(lease.user, lease.index)]
        figures[0] += hi - lo
        figures[1] += _used_ns(sample, result, gpu.uuid, lo, hi)
        requests[(lease.user, lease.index)].add(lease.request_id)
    records = []
    for (user, index), (held_ns, used_ns) in sorted(held.items()):
        idle_ns = max(0, held_ns - used_ns)
        if not idle_ns:
            continue
        gpu = gpus[index]
        device = f"{user}/{RESOURCE}/{gpu.uuid}"
        records.append(UsageRecord(
            idem_key=f"{key}{device}", linux_user=user, resource=RESOURCE, quantity=seconds_of(idle_ns),
            unit=UNITS[RESOURCE], interval_start=start, interval_end=end, method=METHOD, epoch=f"{epoch}{device}",
            model=gpu.name or "unknown",
            evidence={"sample": sample.idem_key, "gpu_index": index, "requests": sorted(requests[(user, index)]),
                      "held_ns": held_ns, "used_ns": used_ns},
        ))
    return tuple(records)


def _used_ns(sample: Sample, result: UsageResult, gpu_uuid: str, lo: int, hi: int) -> int:
    """GPU-nanoseconds of ``gpu_uuid`` charged as usage within ``[lo, hi)``: its own busy spans, and each of its
    MIG devices' at that device's share."""
    used = 0
    for device, spans in result.busy.items():
        if device != gpu_uuid and sample.mig_parents.get(device) != gpu_uuid:
            continue
        slices, total = sample.mig_shares.get(device, (1, 1))
        overlap = sum(max(0, min(hi, b) - max(lo, a)) for a, b in spans)
        used += overlap * slices // total
    return used
