"""Computed usage -> the ledger's ``UsageRecord``s: deterministic keys, epochs and times (pure).

Keys name the node, the boot, the sample's boot-clock time, the Linux user, the resource and the device,
so a retry of the same sample produces byte-identical records (the ledger then writes nothing). Epochs
name the counter without the sample, so the ledger's telescoping rounding runs along one counter.
Interval times are the controller's clock at the moment the sample arrived, minus the boot-clock
duration: monotonic, and independent of the node's (possibly skewed) wall clock.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from collector.charging.deltas import Usage, UsageResult
from collector.charging.samples import Sample
from ledger.records import UNITS, UsageRecord


def interval(result: UsageResult, received_at: datetime) -> tuple[datetime, datetime]:
    """The records' interval on the controller's clock: it ends when the sample arrived and lasts the boot-clock
    duration (to the microsecond, rounded down)."""
    return received_at - timedelta(microseconds=(result.end_ns - result.start_ns) // 1000), received_at


def prefixes(node: str, sample: Sample) -> tuple[str, str]:
    """(epoch prefix, key prefix): a counter is named by its node and boot, a record also by its sample."""
    epoch = f"{node}/{sample.boot_id}/"
    return epoch, f"{epoch}{sample.boottime_ns}/"


def usage_records(node: str, sample: Sample, result: UsageResult, received_at: datetime) -> tuple[UsageRecord, ...]:
    """One ledger record per (Linux user, resource, device) with a non-zero amount."""
    start, end = interval(result, received_at)
    epoch, key = prefixes(node, sample)
    evidence = sample.idem_key
    return tuple(
        UsageRecord(
            idem_key=f"{key}{usage.linux_user}/{usage.resource}{_device(usage)}",
            linux_user=usage.linux_user,
            resource=usage.resource,
            quantity=usage.seconds,
            unit=UNITS[usage.resource],
            interval_start=start,
            interval_end=end,
            method=usage.method,
            epoch=f"{epoch}{usage.linux_user}/{usage.resource}{_device(usage)}",
            model=usage.model,
            evidence={"sample": evidence, "uid": usage.uid, "pids": list(usage.pids)},
        )
        for usage in result.usages
        if usage.amount_ns > 0
    )


def _device(usage: Usage) -> str:
    return f"/{usage.device}" if usage.device else ""
