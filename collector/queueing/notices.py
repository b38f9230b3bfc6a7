"""The GPU queue's news for its users, from one queue tick (docs/queue.md, "Notices"). Pure, except for the
memory of which leases were warned of their end, which the driver keeps (a restart may warn once more)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableSet
from datetime import datetime, timedelta

from collector.enforcing.notices import QueueNotice
from control.queue.records import GpuRef, State
from control.queue.store import Standing
from control.queue.tick import Result

# A lease's end is announced this long before it (``gpu-request --run`` users should save their work).
EXPIRY_WARNING = timedelta(minutes=15)
_TIME = "%Y-%m-%d %H:%M UTC"


def _gpus(gpus: Iterable[GpuRef]) -> str:
    return ", ".join(f"{g.node} GPU {g.index} ({g.model})" for g in gpus)


def _at(at: datetime) -> str:
    return at.strftime(_TIME)


def tick_notices(result: Result, standings: Mapping[int, Standing], now: datetime,
                 warned: MutableSet[int]) -> list[QueueNotice]:
    """``standings``: request id -> its standing after the tick (the ended ones too); ``warned``: the granted
    requests told of their lease's end, updated here."""
    d = result.decisions
    notices: list[QueueNotice] = []

    def add(request_id: int, event: str, text: str) -> None:
        if request_id in standings:
            notices.append(QueueNotice(standings[request_id].request.user, event, f"GPU request {request_id}: {text}"))

    for o in d.offers:
        add(o.request_id, "offer", f"{_gpus(o.gpus)} offered to you until {_at(o.expires)}; start your job on them"
            f" or run gpu-request --claim {o.request_id}.")
    for g in d.grants:
        add(g.request_id, "grant", f"{_gpus(g.gpus)} granted to you until {_at(g.ends)}.")
    for e in d.ends:
        add(e.request_id, "release", f"ended ({e.reason}); its GPUs went back to the queue.")
    for rid in result.idle.releases:
        add(rid, "release", "released: its GPUs were held idle for 120 minutes.")
    for n in result.idle.notices:
        minutes = int(n.idle_for.total_seconds() // 60)
        add(n.request_id, "idle_warning", f"{_gpus([n.gpu])} has been held idle for {minutes} minutes; the grant"
            f" is released at {_at(n.release_at)} unless it is used.")
    live = {r.id for r in result.live if r.state is State.GRANTED}
    warned &= live
    for r in result.live:
        if r.state is State.GRANTED and r.ends is not None and r.ends - now <= EXPIRY_WARNING and r.id not in warned:
            warned.add(r.id)
            add(r.id, "expiry_warning", f"the lease of {_gpus(r.gpus)} ends at {_at(r.ends)}; save your work.")
    return notices
