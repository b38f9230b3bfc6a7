"""What each GPU was doing at a sample, and the hourly record of it that the console's charts read.

A GPU is **held** when a process of a non-root uid has a context on it (root's are the driver's helpers,
nvidia-persistenced and Xorg, which hold every GPU of a node all day). A held GPU is **busy** when NVML
reported utilization above 0 % for the sample's period and **idle-held** when it reported exactly 0 %: the
case the seeds and peers single out (a notebook kernel keeps its memory at 0 %). Utilization NVML could not
read counts as busy, so a driver fault never paints a user as idle. Ownership never comes from utilization.

One row per (hour, node, GPU) counts samples in each state; the console turns counts into GPU-hours with the
tick interval it was sampled at (a sample stands for one tick). These are display figures, not money: the
ledger charges from its own records, and a sample is counted each time a tick records it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Literal, NamedTuple

from sqlalchemy import text
from sqlalchemy.engine import Connection

from collector.charging.samples import Gpu, Sample

Activity = Literal["free", "busy", "idle_held"]
# The hourly row keeps at most this many holder names: enough for a shared GPU, bounded for a hostile one.
MAX_HOLDERS = 16


class Holder(NamedTuple):
    uid: int
    user: str | None
    memory_used_bytes: int | None


def holders(sample: Sample) -> dict[str, tuple[Holder, ...]]:
    """Non-root processes holding each physical GPU (a MIG device's process counts for its GPU), one per uid
    with the memory of its processes added up (None when NVML gave none for any of them)."""
    per_gpu: dict[str, dict[int, Holder]] = {}
    for p in sample.gpu_processes:
        if p.uid is None or p.uid == 0:
            continue
        uid_map = per_gpu.setdefault(p.gpu_uuid, {})
        seen = uid_map.get(p.uid)
        memory = p.used_memory_bytes
        if seen is not None:
            memory = None if seen.memory_used_bytes is None or memory is None else seen.memory_used_bytes + memory
        uid_map[p.uid] = Holder(p.uid, p.user or (seen.user if seen else None), memory)
    return {gpu: tuple(sorted(by_uid.values())) for gpu, by_uid in per_gpu.items()}


def activity(gpu: Gpu, held_by: Iterable[Holder]) -> Activity:
    if not tuple(held_by):
        return "free"
    return "idle_held" if gpu.utilization_percent == 0 else "busy"


def gpu_rows(node: str, sample: Sample, seen: datetime) -> list[dict[str, Any]]:
    """The registry's latest-state rows of a sample's GPUs, each with its holders and activity."""
    held = holders(sample)
    return [
        {"node": node, "uuid": g.uuid, "index": g.index, "name": g.name, "total": g.memory_total_bytes,
         "state": {"memory_used_bytes": g.memory_used_bytes, "utilization_percent": g.utilization_percent,
                   "temperature_c": g.temperature_c, "power_mw": g.power_mw,
                   "holders": [h._asdict() for h in held.get(g.uuid, ())],
                   "activity": activity(g, held.get(g.uuid, ()))},
         "seen": seen.isoformat()}
        for g in sample.gpus
    ]


_RECORD_HOURS = """
    INSERT INTO collector.gpu_hourly AS h (hour, node, uuid, model, samples, utilization_samples,
           utilization_sum, held_samples, idle_held_samples, memory_used_max, holders)
    SELECT date_trunc('hour', x.seen), x.node, x.uuid, coalesce(x.name, ''), 1,
           (x.utilization IS NOT NULL)::int, coalesce(x.utilization, 0), (x.activity <> 'free')::int,
           (x.activity = 'idle_held')::int, x.memory_used, x.holders
      FROM json_to_recordset(CAST(:rows AS json))
           AS x(node text, uuid text, name text, seen timestamptz, utilization int, memory_used bigint,
                activity text, holders text[])
    ON CONFLICT (hour, node, uuid) DO UPDATE SET
        model = EXCLUDED.model, samples = h.samples + 1,
        utilization_samples = h.utilization_samples + EXCLUDED.utilization_samples,
        utilization_sum = h.utilization_sum + EXCLUDED.utilization_sum,
        held_samples = h.held_samples + EXCLUDED.held_samples,
        idle_held_samples = h.idle_held_samples + EXCLUDED.idle_held_samples,
        memory_used_max = greatest(h.memory_used_max, EXCLUDED.memory_used_max),
        holders = (SELECT coalesce(array_agg(u ORDER BY u), '{}') FROM (
                       SELECT DISTINCT u FROM unnest(h.holders || EXCLUDED.holders) AS u LIMIT :cap) AS d)
"""


def record_hours(conn: Connection, rows: Iterable[Mapping[str, Any]]) -> None:
    """Add each latest-state row (``gpu_rows``) to its GPU's hour, in one statement."""
    hourly = [
        {"node": r["node"], "uuid": r["uuid"], "name": r["name"], "seen": r["seen"],
         "utilization": r["state"]["utilization_percent"], "memory_used": r["state"]["memory_used_bytes"],
         "activity": r["state"]["activity"],
         "holders": sorted({h["user"] or f"uid {h['uid']}" for h in r["state"]["holders"]})[:MAX_HOLDERS]}
        for r in rows
    ]
    if hourly:
        conn.execute(text(_RECORD_HOURS), {"rows": json.dumps(hourly), "cap": MAX_HOLDERS})
