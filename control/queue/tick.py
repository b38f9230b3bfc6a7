"""One tick of the queue, in ONE transaction on the caller's connection: the users' operations read from the
nodes' drop boxes (or the API), the idle-held releases, the allocator, and its decisions written. A controller
killed anywhere in it leaves the previous tick's state; the next tick recomputes from there, and the unique
index on live GPU rows stops a double grant even if two controllers overlapped. The nodes serve what they handed
over until the controller acknowledges it after the commit, so an operation may arrive again: each (user, nonce)
is applied once (``control.queue.replays``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DataError, IntegrityError

from control.queue import idle, replays, store
from control.queue.allocator import allocate
from control.queue.intake import NONCE, OPS, Catalog, Refused, check, target
from control.queue.records import Decisions, GpuFact, Policy, Request
from control.queue.store import NewRequest
from ledger import fairshare

log = logging.getLogger("gpuledger.controller")


@dataclass(frozen=True)
class Op:
    """One operation a user filed: ``user`` is the billing user the kernel-vouched (node, uid) maps to."""

    user: str
    project: str | None
    body: Mapping[str, Any]
    origin_node: str | None = None
    uid: int | None = None


@dataclass(frozen=True)
class OpOutcome:
    op: Op
    outcome: str
    request_id: int | None = None


@dataclass(frozen=True)
class Result:
    decisions: Decisions
    outcomes: tuple[OpOutcome, ...] = ()
    idle: idle.Assessment = field(default_factory=lambda: idle.Assessment((), (), ()))
    live: tuple[Request, ...] = ()


def submit(conn: Connection, op: Op, catalog: Catalog, policy: Policy, now: datetime) -> OpOutcome:
    """Check and queue an ``op: request`` (the queued-requests cap counts here), or record its refusal."""
    try:
        new = check(op.body, user=op.user, project=op.project, catalog=catalog, policy=policy,
                    origin_node=op.origin_node, uid=op.uid)
    except Refused as exc:
        nonce = op.body.get("nonce")
        if isinstance(nonce, str) and NONCE.fullmatch(nonce):  # stored, so the user's answer says why
            store.refuse(conn, NewRequest(user=op.user, project=op.project, nonce=nonce, models=(), count=1,
                                          hours=policy.default_hours, origin_node=op.origin_node, uid=op.uid),
                         exc.reason, now=now)
        return OpOutcome(op, f"refused: {exc.reason}")
    if store.queued_count(conn, op.user) >= policy.max_queued_per_user:
        store.refuse(conn, new, f"at most {policy.max_queued_per_user} queued requests per user", now=now)
        return OpOutcome(op, "refused: queued cap")
    return OpOutcome(op, "queued", store.submit(conn, new, now=now))


def _apply(conn: Connection, op: Op, kind: str, catalog: Catalog, policy: Policy, now: datetime,
           claims: set[int]) -> OpOutcome:
    try:
        if kind == "request":
            return submit(conn, op, catalog, policy, now)
        if kind == "cancel":
            rid = target(op.body, required=True)
            assert rid is not None
            return OpOutcome(op, "cancelled" if store.end(conn, rid, "cancelled", now=now, user=op.user)
                             else "refused: no such request", rid)
        if kind == "release":
            rid = target(op.body, required=False)
            if rid is None:
                return OpOutcome(op, f"released {len(store.release_all(conn, op.user, 'released', now=now))}")
            return OpOutcome(op, "released" if store.end(conn, rid, "released", now=now, user=op.user)
                             else "refused: no such request", rid)
        rid = target(op.body, required=True)  # a claim
        assert rid is not None
        request = store.get(conn, rid)
        if request is None or request.user != op.user:
            return OpOutcome(op, "refused: no such request", rid)
        claims.add(rid)
        return OpOutcome(op, "claimed", rid)
    except Refused as exc:
        return OpOutcome(op, f"refused: {exc.reason}")


def _apply_op(conn: Connection, op: Op, catalog: Catalog, policy: Policy, now: datetime,
              claims: set[int]) -> OpOutcome:
    """Apply ``op`` once per (user, nonce): a replay (the node serves an entry again until it is acknowledged,
    control.queue.replays) answers the first outcome and changes nothing, not even a second refusal."""
    kind, nonce = op.body.get("op"), op.body.get("nonce")
    if kind not in OPS:
        return OpOutcome(op, f"refused: unknown op {str(kind)[:20]!r}")
    if not isinstance(nonce, str) or not NONCE.fullmatch(nonce):
        return OpOutcome(op, "refused: the operation has no valid nonce")
    first = replays.seen(conn, op.user, nonce)
    if first is not None:
        return OpOutcome(op, f"replayed: {first.outcome}", first.request_id)
    try:
        with conn.begin_nested():
            outcome = _apply(conn, op, kind, catalog, policy, now, claims)
    except (DataError, IntegrityError) as exc:
        # What the checks let through but the database refuses (a uid past the column's range, say) is refused
        # alone: failing the transaction would fail every tick, as the nodes serve it again until it is filed.
        outcome = OpOutcome(op, f"refused: the database refused it ({type(exc.orig).__name__})")
    replays.record(conn, op.user, nonce, kind, replays.Seen(outcome.outcome, outcome.request_id), now=now)
    return outcome


def run(conn: Connection, ops: Sequence[Op], facts: Sequence[GpuFact], idle_gpus: Mapping[Any, bool],
        policy: Policy, now: datetime, usage: Mapping[str, Decimal] | None = None) -> Result:
    """The queue's tick (module docstring). ``usage`` defaults to the ledger's decayed GPU charges."""
    store.lock(conn)
    replays.forget(conn, now=now)
    catalog = Catalog.of([f.ref for f in facts])
    claims: set[int] = set()
    outcomes = tuple(_apply_op(conn, op, catalog, policy, now, claims) for op in ops)
    live = store.load(conn)
    previous = store.idle_state(conn)
    assessment = idle.assess(live, idle_gpus, previous, now)
    # Only the GPUs whose idle state moved: rewriting every granted GPU's row each tick cost ~0.5 s at 8,000.
    store.idle_update(conn, [row for row in assessment.rows
                             if previous.get(row[:3], (None, 0)) != row[3:]], now=now)
    for rid in assessment.releases:
        store.end(conn, rid, idle.RELEASED, now=now)
    if assessment.releases:
        live = store.load(conn)
    if usage is None:
        usage = fairshare.decayed_gpu_charges(conn, half_life_s=policy.half_life_s, now=now)
    decisions = allocate(live, facts, usage, now, policy, claims)
    store.apply(conn, decisions, now=now)
    return Result(decisions, outcomes, assessment, tuple(store.load(conn)))
