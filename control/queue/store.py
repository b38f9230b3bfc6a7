"""The queue's state in PostgreSQL (``control.queue_request``, ``control.queue_gpu``; migration control0004), and
the ended idle spells of granted GPUs (``control.queue_idle_spell``, control0009).

``load`` reads the live requests, ``apply`` writes one tick's ``Decisions``; the caller runs both, and the
user operations of the tick, in ONE transaction, so a controller killed mid-tick leaves the previous tick's
state and the restarted one recomputes. The partial unique index on live GPU rows makes a double grant an
error, never a fact. Every time is the caller's ``now``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from sqlalchemy import text
from sqlalchemy.engine import Connection

from control.queue.records import Decisions, GpuRef, Policy, Request, State


class QueueError(Exception):
    """Base of the queue's refusals; each carries its data."""


class UnknownRequest(QueueError):
    def __init__(self, request_id: int) -> None:
        super().__init__(f"no live GPU request {request_id}")
        self.request_id = request_id


class ExtensionRefused(QueueError):
    def __init__(self, request_id: int, waiting: int) -> None:
        super().__init__(f"request {request_id} cannot be extended: {waiting} request(s) wait for its GPUs")
        self.request_id = request_id
        self.waiting = waiting


@dataclass(frozen=True)
class NewRequest:
    """A request as checked by ``intake``: who (billing user, and the node and uid that filed it), what."""

    user: str
    project: str | None
    nonce: str
    models: tuple[str, ...]
    count: int
    hours: Decimal
    node: str | None = None
    run: bool = False
    origin_node: str | None = None
    uid: int | None = None


def _request(row: object) -> Request:
    r = row._mapping  # type: ignore[attr-defined]
    gpus = tuple(sorted(GpuRef(n, int(i), m) for n, i, m in (r["gpus"] or ())))
    return Request(
        id=int(r["id"]), user=r["billing_user"], project=r["project"], models=frozenset(r["models"]),
        count=int(r["gpu_count"]), hours=Decimal(r["hours"]), node=r["node"], created_at=r["created_at"],
        state=State(r["state"]), gpus=gpus, offer_expires=r["offer_expires"], granted_at=r["granted_at"],
        ends=r["ends"], boost_hours=int(r["boost_hours"]), reason=r["reason"])


_SELECT = """
    SELECT q.*, (SELECT array_agg(ARRAY[g.node, g.gpu_index::text, g.model] ORDER BY g.node, g.gpu_index)
                   FROM control.queue_gpu g WHERE g.request_id = q.id AND g.released_at IS NULL) AS gpus
      FROM control.queue_request q
"""


@dataclass(frozen=True)
class Standing:
    """A request and what the last tick wrote beside it: while queued, its position and estimate with the
    estimate's basis; once over, when it ended. With where it was filed (node and uid, None for the API's) and
    its nonce, for its user's answer (``queue-status``)."""

    request: Request
    nonce: str
    origin_node: str | None
    uid: int | None
    position: int | None
    eta: datetime | None
    basis: str
    ended_at: datetime | None = None


def _standing(row: object) -> Standing:
    r = row._mapping  # type: ignore[attr-defined]
    return Standing(_request(row), r["nonce"], r["origin_node"], None if r["uid"] is None else int(r["uid"]),
                    None if r["position"] is None else int(r["position"]), r["eta"], r["eta_basis"], r["ended_at"])


def load(conn: Connection) -> list[Request]:
    """Every live request (queued, offered, granted), with its live GPUs, oldest first."""
    rows = conn.execute(text(_SELECT + " WHERE q.state IN ('queued', 'offered', 'granted') ORDER BY q.id"))
    return [_request(row) for row in rows]


# Two-key advisory lock (this namespace, 0): apart from the one-key locks (writer, migration, settings) and
# from the node edits' namespace.
_LOCK_NAMESPACE = 0x676C7175


def lock(conn: Connection) -> None:
    """Serialise the queue's writers (the tick, and the API's and console's operations between ticks) for the
    rest of the transaction: an admin's cancel landing inside a tick could otherwise end a request the tick is
    offering GPUs to, leaving live GPU rows on an ended request."""
    conn.execute(text("SELECT pg_advisory_xact_lock(:ns, 0)"), {"ns": _LOCK_NAMESPACE})


def of_user(conn: Connection, user: str, *, since: datetime) -> list[Request]:
    """The user's live requests and those that ended after ``since``, oldest first (the API's and console's)."""
    return [_request(row) for row in conn.execute(text(
        _SELECT + " WHERE q.billing_user = :u AND (q.state IN ('queued', 'offered', 'granted') OR q.ended_at >= :since)"
        " ORDER BY q.id"), {"u": user, "since": since})]


def standings(conn: Connection, *, since: datetime) -> dict[str, list[Standing]]:
    """Per user with a live request or one that ended (or was refused) after ``since``: those requests, oldest
    first, in one query (the users whose answers the nodes should show). The ended ones are found by
    ``queue_request_ended`` (control0007), so the tick does not scan every request ever filed."""
    found: dict[str, list[Standing]] = {}
    rows = conn.execute(text(
        _SELECT + " WHERE q.state IN ('queued', 'offered', 'granted') OR q.ended_at >= :since ORDER BY q.id"),
        {"since": since})
    for row in rows:
        standing = _standing(row)
        found.setdefault(standing.request.user, []).append(standing)
    return found


def standing_of(conn: Connection, request_ids: Sequence[int]) -> dict[int, Standing]:
    """The standings of ``request_ids`` (those that exist), by id."""
    rows = conn.execute(text(_SELECT + " WHERE q.id = ANY(:ids)"), {"ids": list(request_ids)})
    return {s.request.id: s for s in map(_standing, rows)}


def get(conn: Connection, request_id: int) -> Request | None:
    row = conn.execute(text(_SELECT + " WHERE q.id = :id"), {"id": request_id}).one_or_none()
    return None if row is None else _request(row)


def submit(conn: Connection, new: NewRequest, *, now: datetime) -> int:
    """Store ``new`` as queued; the same (user, nonce) again returns the first one's id and stores nothing."""
    row = conn.execute(text(
        "INSERT INTO control.queue_request (billing_user, project, origin_node, uid, nonce, models, gpu_count,"
        " hours, node, run, created_at) VALUES (:user, :project, :origin, :uid, :nonce, :models, :count, :hours,"
        " :node, :run, :now) ON CONFLICT (billing_user, nonce) DO NOTHING RETURNING id"),
        {"user": new.user, "project": new.project, "origin": new.origin_node, "uid": new.uid, "nonce": new.nonce,
         "models": list(new.models), "count": new.count, "hours": new.hours, "node": new.node, "run": new.run,
         "now": now}).one_or_none()
    if row is not None:
        return int(row.id)
    return int(conn.execute(text(
        "SELECT id FROM control.queue_request WHERE billing_user = :u AND nonce = :n"),
        {"u": new.user, "n": new.nonce}).scalar_one())


def queued_count(conn: Connection, user: str) -> int:
    return int(conn.execute(text(
        "SELECT count(*) FROM control.queue_request WHERE billing_user = :u AND state IN ('queued', 'offered')"),
        {"u": user}).scalar_one())


def refuse(conn: Connection, new: NewRequest, reason: str, *, now: datetime) -> None:
    """Record a refused request (the user sees why in their status), unless its nonce was seen already."""
    conn.execute(text(
        "INSERT INTO control.queue_request (billing_user, project, origin_node, uid, nonce, models, gpu_count,"
        " hours, node, run, created_at, state, ended_at, reason) VALUES (:user, :project, :origin, :uid, :nonce,"
        " :models, :count, :hours, :node, :run, :now, 'refused', :now, :reason)"
        " ON CONFLICT (billing_user, nonce) DO NOTHING"),
        {"user": new.user, "project": new.project, "origin": new.origin_node, "uid": new.uid, "nonce": new.nonce,
         "models": list(new.models), "count": max(1, min(new.count, 64)),
         "hours": min(max(new.hours, Decimal("0.01")), Decimal(168)), "node": new.node, "run": new.run,
         "now": now, "reason": reason[:200]})


def end(conn: Connection, request_id: int, reason: str, *, now: datetime, user: str | None = None) -> bool:
    """End a live request (cancel, release, a lease's end, an expired offer) and free its GPUs; ``user``, when
    given, must own it. False when there was no such live request."""
    ended = conn.execute(text(
        "UPDATE control.queue_request SET state = 'ended', ended_at = :now, reason = :reason"
        " WHERE id = :id AND state IN ('queued', 'offered', 'granted')"
        " AND (CAST(:user AS text) IS NULL OR billing_user = :user)"
        " RETURNING id"), {"id": request_id, "now": now, "reason": reason, "user": user}).one_or_none()
    if ended is None:
        return False
    conn.execute(text("DELETE FROM control.queue_gpu WHERE request_id = :id AND kind = 'hold'"), {"id": request_id})
    conn.execute(text("UPDATE control.queue_gpu SET released_at = :now WHERE request_id = :id"
                      " AND released_at IS NULL"), {"id": request_id, "now": now})
    return True


def release_all(conn: Connection, user: str, reason: str, *, now: datetime) -> list[int]:
    """End every granted or offered request of ``user``; their ids."""
    ids = [int(i) for i in conn.execute(text(
        "SELECT id FROM control.queue_request WHERE billing_user = :u AND state IN ('offered', 'granted')"
        " ORDER BY id"), {"u": user}).scalars()]
    return [i for i in ids if end(conn, i, reason, now=now)]


def _insert_gpus(conn: Connection, request_id: int, gpus: Sequence[GpuRef], kind: str, now: datetime) -> None:
    for g in gpus:
        conn.execute(text(
            "INSERT INTO control.queue_gpu (request_id, node, gpu_index, model, kind, since)"
            " VALUES (:r, :node, :i, :model, :kind, :now)"),
            {"r": request_id, "node": g.node, "i": g.index, "model": g.model, "kind": kind, "now": now})


def apply(conn: Connection, decisions: Decisions, *, now: datetime) -> None:
    """Write one tick's decisions: ends first (their GPUs free), then holds, offers, grants, estimates."""
    for e in decisions.ends:
        end(conn, e.request_id, e.reason, now=now)
    conn.execute(text(
        "DELETE FROM control.queue_gpu g USING control.queue_request q"
        " WHERE g.request_id = q.id AND g.kind = 'hold' AND q.state = 'queued'"))
    for h in decisions.holds:
        _insert_gpus(conn, h.request_id, h.gpus, "hold", now)
    for o in decisions.offers:
        conn.execute(text(
            "UPDATE control.queue_request SET state = 'offered', offer_expires = :exp, position = NULL, eta = NULL,"
            " eta_basis = '' WHERE id = :id AND state = 'queued'"), {"id": o.request_id, "exp": o.expires})
        _insert_gpus(conn, o.request_id, o.gpus, "offer", now)
    for g in decisions.grants:
        grant(conn, g.request_id, ends=g.ends, now=now)
    if decisions.estimates:
        conn.execute(text(
            "UPDATE control.queue_request SET position = :position, eta = :eta, eta_basis = :basis"
            " WHERE id = :id AND state = 'queued'"),
            [{"id": e.request_id, "position": e.position, "eta": e.eta, "basis": e.basis}
             for e in decisions.estimates])


def grant(conn: Connection, request_id: int, *, ends: datetime, now: datetime) -> bool:
    """Turn an offer into a grant, a lease ending at ``ends``: the request and its offered GPUs together, the
    one place this happens (the tick's grants, a user's claim, an admin's approve). False when the request
    has no offer (then nothing changed)."""
    done = conn.execute(text(
        "UPDATE control.queue_request SET state = 'granted', granted_at = :now, ends = :ends"
        " WHERE id = :id AND state = 'offered' RETURNING id"), {"id": request_id, "now": now, "ends": ends})
    if done.one_or_none() is None:
        return False
    conn.execute(text("UPDATE control.queue_gpu SET kind = 'grant', since = :now WHERE request_id = :id"
                      " AND released_at IS NULL"), {"id": request_id, "now": now})
    return True


def extend(conn: Connection, request: Request, hours: Decimal, waiting: int, *, policy: Policy) -> datetime:
    """Move a grant's end ``hours`` later, only when nobody waits for its GPUs (``waiting``: the queued requests
    that could use one of them, ``waiting_for``); the new end."""
    if request.state is not State.GRANTED or request.ends is None:
        raise UnknownRequest(request.id)
    if waiting:
        raise ExtensionRefused(request.id, waiting)
    granted_at = request.granted_at or request.ends
    ends = min(request.ends + timedelta(seconds=int(hours * 3600)),
               granted_at + timedelta(seconds=int(policy.max_hours * 3600)))
    conn.execute(text("UPDATE control.queue_request SET ends = :ends WHERE id = :id AND state = 'granted'"),
                 {"id": request.id, "ends": ends})
    return ends


def waiting_for(live: Sequence[Request], request: Request) -> int:
    """How many queued requests could use one of ``request``'s GPUs."""
    return sum(1 for r in live if r.state is State.QUEUED and any(r.matches(g) for g in request.gpus))


def reorder(conn: Connection, request_id: int, boost_hours: int) -> None:
    """Set a queued request's admin boost (hours of waiting added to its priority, capped by the policy)."""
    done = conn.execute(text("UPDATE control.queue_request SET boost_hours = :b WHERE id = :id"
                             " AND state IN ('queued', 'offered') RETURNING id"),
                        {"id": request_id, "b": boost_hours}).one_or_none()
    if done is None:
        raise UnknownRequest(request_id)


def idle_update(conn: Connection, rows: Sequence[tuple[int, str, int, datetime | None, int]], *,
                now: datetime) -> None:
    """(request id, node, index, idle since, notices sent) per live granted GPU, from ``idle.assess``. A GPU
    that was idle and is no longer (its idle since cleared) has its spell, idle since to ``now``, written to
    ``control.queue_idle_spell`` by the same statement (its CTE reads the row as it was before the update), so
    ``idle_hours`` counts every spell and not only the one in progress. A spell of no length (the clock went
    back) is nothing to keep."""
    if rows:
        conn.execute(text(
            "WITH ended AS (INSERT INTO control.queue_idle_spell (request_id, node, gpu_index, since, until)"
            " SELECT request_id, node, gpu_index, idle_since, :now FROM control.queue_gpu WHERE request_id = :r"
            " AND node = :node AND gpu_index = :i AND released_at IS NULL AND idle_since < :now"
            " AND CAST(:since AS timestamptz) IS NULL)"
            " UPDATE control.queue_gpu SET idle_since = :since, idle_notices = :n WHERE request_id = :r"
            " AND node = :node AND gpu_index = :i AND released_at IS NULL"),
            [{"r": r, "node": n, "i": i, "since": s, "n": k, "now": now} for r, n, i, s, k in rows])


def idle_state(conn: Connection) -> dict[tuple[int, str, int], tuple[datetime | None, int]]:
    rows = conn.execute(text("SELECT request_id, node, gpu_index, idle_since, idle_notices FROM control.queue_gpu"
                             " WHERE released_at IS NULL AND kind = 'grant'"))
    return {(int(r.request_id), r.node, int(r.gpu_index)): (r.idle_since, int(r.idle_notices)) for r in rows}


# The report's figures are hours to two decimals, rounded half to even: 0.01 h is 36 s, so 18 s is 0.00 and
# 54 s is 0.02. The seconds are summed exactly (numeric) first and rounded once per user.
HOURS = Decimal("0.01")


def idle_hours(conn: Connection, *, since: datetime, until: datetime, user: str | None = None) -> dict[str, Decimal]:
    """Idle-held GPU-hours per user (only ``user``'s, when given) between ``since`` and ``until``: every ended
    idle spell (``control.queue_idle_spell``) and every spell still open on a granted GPU row (from its idle
    start to its release, or ``until``), each clipped to the window, in one query. The weekly report and the
    statements' figure (docs/queue.md, "Idle-held GPUs")."""
    rows = conn.execute(text(
        "SELECT u, sum(s) AS s FROM ("
        " SELECT q.billing_user AS u, extract(epoch FROM least(i.until, :until) - greatest(i.since, :since)) AS s"
        " FROM control.queue_idle_spell i JOIN control.queue_request q ON q.id = i.request_id"
        " WHERE i.until > :since AND i.since < :until"
        " UNION ALL"
        " SELECT q.billing_user, extract(epoch FROM least(coalesce(g.released_at, :until), :until)"
        " - greatest(g.idle_since, :since)) FROM control.queue_gpu g JOIN control.queue_request q"
        " ON q.id = g.request_id WHERE g.kind = 'grant' AND g.idle_since IS NOT NULL AND g.idle_since < :until"
        " AND coalesce(g.released_at, :until) > :since) spells"
        " WHERE CAST(:user AS text) IS NULL OR u = :user GROUP BY 1 ORDER BY 1"),
        {"since": since, "until": until, "user": user})
    return {r.u: (Decimal(r.s) / 3600).quantize(HOURS, ROUND_HALF_EVEN) for r in rows}
