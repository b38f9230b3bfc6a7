"""The queue's grants as leases over a span of time, for the reservation charge (docs/queue.md, "Money"): which
billing user held which GPU (node, NVML index) from when to when. Released grants are read too, so a lease that
ended inside a charged interval is charged up to its end and no further.

It reads the queue's tables (``control.queue_gpu``, ``control.queue_request``; ``control.queue.store`` writes
them): a grant's GPU row has kind ``grant`` from the moment of the grant (``since``) and keeps it when released
(``released_at``; a released row never changes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.engine import Connection

TABLE = "control.queue_gpu"  # what presence checks: a controller-only install has no queue tables


@dataclass(frozen=True)
class Lease:
    """One granted GPU: ``user`` (the billing user) held GPU ``index`` of ``node`` over ``[start, end)``; ``end``
    is the earlier of its release and the lease's declared end (a lease past its end awaits the tick that ends
    it, and that wait is not the holder's)."""

    request_id: int
    user: str
    node: str
    index: int
    start: datetime
    end: datetime


def overlapping(conn: Connection, nodes: Sequence[str], start: datetime, end: datetime) -> list[Lease]:
    """Every lease on ``nodes`` that overlaps ``[start, end)``, by node, GPU and start."""
    rows = conn.execute(text(
        "SELECT g.request_id, q.billing_user, g.node, g.gpu_index, g.since, least(g.released_at, q.ends) AS until"
        "  FROM control.queue_gpu g JOIN control.queue_request q ON q.id = g.request_id"
        " WHERE g.kind = 'grant' AND g.node = ANY(:nodes) AND g.since < :end"
        "   AND least(g.released_at, q.ends) > :start"
        " ORDER BY g.node, g.gpu_index, g.since, g.request_id"),
        {"nodes": list(nodes), "start": start, "end": end})
    return [Lease(int(r.request_id), r.billing_user, r.node, int(r.gpu_index), r.since, r.until) for r in rows]
