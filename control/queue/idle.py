"""Held-but-idle GPUs (docs/queue.md, "Idle-held GPUs"), pure: a granted GPU whose holder's processes on it
hold at least ``min_memory_mib`` and show no utilization in a sample is idle; one that stays idle gets a notice
at 60 and at 105 minutes and its grant is released at 120. Any utilization resets the clock; the spell that
ended is kept by ``store.idle_update`` (control.queue_idle_spell), so the idle-held hours count every spell."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from control.queue.records import GpuRef, Request, State

NOTICES = (timedelta(minutes=60), timedelta(minutes=105))
RELEASE = timedelta(minutes=120)
RELEASED = "idle-held for 120 minutes"


@dataclass(frozen=True)
class IdleNotice:
    request_id: int
    user: str
    gpu: GpuRef
    idle_for: timedelta
    release_at: datetime


@dataclass(frozen=True)
class Assessment:
    """Per live granted GPU its new idle state (request id, node, index, idle since, notices sent), the
    notices due now, and the requests to release."""

    rows: tuple[tuple[int, str, int, datetime | None, int], ...]
    notices: tuple[IdleNotice, ...]
    releases: tuple[int, ...]


def assess(grants: Sequence[Request], idle: Mapping[GpuRef, bool],
           previous: Mapping[tuple[int, str, int], tuple[datetime | None, int]], now: datetime) -> Assessment:
    """``idle``: per GPU of this tick's samples, whether it is held idle (GPUs without a sample are left as
    they were); ``previous``: ``store.idle_state``."""
    rows: list[tuple[int, str, int, datetime | None, int]] = []
    notices: list[IdleNotice] = []
    releases: list[int] = []
    for r in grants:
        if r.state is not State.GRANTED:
            continue
        for g in r.gpus:
            since, sent = previous.get((r.id, g.node, g.index), (None, 0))
            if g not in idle:
                continue
            if not idle[g]:
                rows.append((r.id, g.node, g.index, None, 0))
                continue
            since = since or now
            due = sum(1 for t in NOTICES if now - since >= t)
            if due > sent:
                notices.append(IdleNotice(r.id, r.user, g, now - since, since + RELEASE))
            rows.append((r.id, g.node, g.index, since, max(due, sent)))
            if now - since >= RELEASE and r.id not in releases:
                releases.append(r.id)
    return Assessment(tuple(rows), tuple(notices), tuple(releases))
