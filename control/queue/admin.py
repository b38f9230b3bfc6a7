"""The queue's operations from outside the tick: what the API, the console and the CLI ask between two ticks.

A user's request, cancel, release and claim (identity: the caller's billing user, which the API takes from
the token or session, never from the body), and an admin's or operator's boost, cancel, extend and approve.
Each admin action is one row of ``control.queue_action`` (migration control0006: actor, reason, before,
after), written in the transaction that makes the change, whichever door it came through; with an idempotency
key a retry finds that row and changes nothing again.

Every operation first takes ``store.lock``, the queue's transaction lock, which ``tick.run`` takes too, so no
two of them (nor one and a tick) interleave on one request (docs/queue.md, "API, CLI and console"). The
queue's rules stay where they are: filing is ``tick.submit`` (intake and the queued cap), ends are
``store.end``, extension is ``store.extend`` under ``store.waiting_for``.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from control.queue import store, tick
from control.queue.intake import Catalog, Refused
from control.queue.records import Policy, Request, State

ACTIONS = ("boost", "cancel", "extend", "approve")

class KeyReused(store.QueueError):
    """The idempotency key was used for another operation: refused, since the key would name two."""

    def __init__(self, key: str, request_id: int) -> None:
        super().__init__(f"idempotency key {key!r} was already used for another operation (request {request_id})")
        self.key = key
        self.request_id = request_id


class NotOffered(store.QueueError):
    """Claim and approve turn a live offer into a grant; this request has none (queued, granted, or expired)."""

    def __init__(self, request_id: int, state: str) -> None:
        super().__init__(f"request {request_id} has no live offer to claim (it is {state})")
        self.request_id = request_id
        self.state = state


class BoostOutOfRange(store.QueueError):
    def __init__(self, hours: int, cap: int) -> None:
        super().__init__(f"boost {hours} h is outside 0 to {cap} h (the policy's admin_boost_cap_hours)")
        self.hours = hours
        self.cap = cap


@dataclass(frozen=True)
class Shown:
    """A request as the API, console and CLI show it: the record, and its standing (``store.Standing``:
    position, ETA and its basis while queued, when it ended)."""

    request: Request
    standing: store.Standing


@dataclass(frozen=True)
class Action:
    """One admin action as recorded (``control.queue_action``)."""

    id: int
    request_id: int
    action: str
    actor: str
    reason: str
    before: Mapping[str, Any]
    after: Mapping[str, Any]
    at: datetime
    replayed: bool = False

    @property
    def target(self) -> str:
        """The request, named as the audit logs name what they change."""
        return f"gpu-request:{self.request_id}"


def shown(conn: Connection, requests: Sequence[Request]) -> list[Shown]:
    """``requests`` with their standing (position, ETA and its basis, end), in the same order."""
    rows = store.standing_of(conn, [r.id for r in requests])
    return [Shown(r, rows[r.id]) for r in requests]


def listing(conn: Connection, *, now: datetime, user: str | None = None, state: State | None = None,
            model: str | None = None, node: str | None = None) -> list[Request]:
    """The live requests (with ``user``: also theirs that ended in the last 7 days), filtered."""
    found = store.load(conn) if user is None else store.of_user(conn, user, since=now - timedelta(days=7))
    return [r for r in found
            if (state is None or r.state is state) and (model is None or not r.models or model in r.models)
            and (node is None or r.node == node or any(g.node == node for g in r.gpus))]


# -- a user's operations


def nonce_of(key: str | None) -> str:
    """The request's nonce (its identity per user, ``store.submit``): from the caller's idempotency key, so a
    retry files one request; without a key, a fresh one."""
    if key is None:
        return secrets.token_hex(16)
    return "k" + hashlib.sha256(key.encode()).hexdigest()[:40]


def request(conn: Connection, *, user: str, project: str | None, body: Mapping[str, Any], catalog: Catalog,
            policy: Policy, now: datetime, key: str | None = None) -> tuple[Request, bool]:
    """File ``body`` (models, count, hours, node) for ``user`` through ``tick.submit``; the stored request and
    whether it is a replay of ``key``'s. ``Refused`` with the intake's reason (or the queued cap's)."""
    store.lock(conn)
    nonce = nonce_of(key)
    wanted = {"op": "request", "nonce": nonce, **body}
    before = _by_nonce(conn, user, nonce)
    if before is not None:
        if not _same(before, wanted, policy):
            assert key is not None
            raise KeyReused(key, before.id)
        if before.state is State.REFUSED:
            raise Refused(before.reason)
        return before, True
    outcome = tick.submit(conn, tick.Op(user, project, wanted), catalog, policy, now)
    if outcome.request_id is None:
        refused = _by_nonce(conn, user, nonce)   # the queued cap records its refusal with the reason
        raise Refused(refused.reason if refused is not None else outcome.outcome.removeprefix("refused: "))
    stored = store.get(conn, outcome.request_id)
    assert stored is not None
    return stored, False


def _by_nonce(conn: Connection, user: str, nonce: str) -> Request | None:
    rid = conn.execute(text("SELECT id FROM control.queue_request WHERE billing_user = :u AND nonce = :n"),
                       {"u": user, "n": nonce}).scalar_one_or_none()
    return None if rid is None else store.get(conn, int(rid))


def _same(stored: Request, body: Mapping[str, Any], policy: Policy) -> bool:
    try:
        hours = Decimal(str(body["hours"])).quantize(Decimal("0.01")) if body.get("hours") is not None \
            else policy.default_hours
    except ArithmeticError:
        return False
    return (stored.models == frozenset(body.get("models") or ()) and stored.count == body.get("count", 1)
            and stored.hours == hours and stored.node == body.get("node"))


def cancel(conn: Connection, request_id: int, *, user: str, now: datetime) -> None:
    """End ``user``'s live request (queued, offered or granted); ``UnknownRequest`` when there is none."""
    store.lock(conn)
    if not store.end(conn, request_id, "cancelled", now=now, user=user):
        raise store.UnknownRequest(request_id)


def release(conn: Connection, *, user: str, now: datetime, request_id: int | None = None) -> list[int]:
    """End ``user``'s grant or offer ``request_id`` (None: all of them); the ids ended."""
    store.lock(conn)
    if request_id is None:
        return store.release_all(conn, user, "released", now=now)
    request = store.get(conn, request_id)
    if request is None or request.user != user or request.state not in (State.OFFERED, State.GRANTED):
        raise store.UnknownRequest(request_id)
    store.end(conn, request_id, "released", now=now, user=user)
    return [request_id]


def claim(conn: Connection, request_id: int, *, user: str, now: datetime) -> Request:
    """``gpu-request --claim`` from the API: ``user``'s live offer becomes a grant at once, as the tick would
    make it (a lease ending ``hours`` from now); ``NotOffered`` when it has no offer (or it expired)."""
    store.lock(conn)
    request = store.get(conn, request_id)
    if request is None or request.user != user:
        raise store.UnknownRequest(request_id)
    return _grant(conn, request, now)


def _grant(conn: Connection, request: Request, now: datetime) -> Request:
    # An offer at or past its expiry is the tick's to end: granting it here would race the tick's end.
    if request.state is not State.OFFERED or request.offer_expires is None or request.offer_expires <= now:
        raise NotOffered(request.id, "an expired offer" if request.state is State.OFFERED else request.state.value)
    store.grant(conn, request.id, ends=now + request.duration, now=now)
    granted = store.get(conn, request.id)
    assert granted is not None
    return granted


# -- admin and operator actions, each recorded with its actor and reason


def _replayed(conn: Connection, key: str | None, request_id: int, action: str,
              asked: Mapping[str, Any]) -> Action | None:
    if key is None:
        return None
    row = conn.execute(text(
        "SELECT id, request_id, action, actor, reason, before, after, at FROM control.queue_action"
        " WHERE idempotency_key = :k"), {"k": key}).one_or_none()
    if row is None:
        return None
    stored = replace(Action(*row), replayed=True)
    if stored.request_id != request_id or stored.action != action or stored.after.get("asked") != _jsonable(asked):
        raise KeyReused(key, stored.request_id)
    return stored


def _record(conn: Connection, request_id: int, action: str, *, actor: str, reason: str, before: Mapping[str, Any],
            after: Mapping[str, Any], now: datetime, key: str | None) -> Action:
    row = conn.execute(text(
        "INSERT INTO control.queue_action (request_id, action, actor, reason, before, after, at, idempotency_key)"
        " VALUES (:r, :a, :actor, :reason, CAST(:before AS jsonb), CAST(:after AS jsonb), :at, :key)"
        " RETURNING id, request_id, action, actor, reason, before, after, at"),
        {"r": request_id, "a": action, "actor": actor, "reason": reason, "before": json.dumps(_jsonable(before)),
         "after": json.dumps(_jsonable(after)), "at": now, "key": key}).one()
    return Action(*row)


def _jsonable(value: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(value, default=str, sort_keys=True))  # type: ignore[no-any-return]


def _live(conn: Connection, request_id: int) -> Request:
    request = store.get(conn, request_id)
    if request is None or not request.live:
        raise store.UnknownRequest(request_id)
    return request


def _act(conn: Connection, request_id: int, action: str, asked: Mapping[str, Any], *, actor: str, reason: str,
         now: datetime, key: str | None) -> tuple[Request | None, Action | None]:
    """The start every action shares: the lock, the replay check, the live request."""
    store.lock(conn)
    replay = _replayed(conn, key, request_id, action, asked)
    if replay is not None:
        return None, replay
    return _live(conn, request_id), None


def boost(conn: Connection, request_id: int, hours: int, *, actor: str, reason: str, policy: Policy,
          now: datetime, key: str | None = None) -> Action:
    """Set a queued or offered request's admin boost (hours of waiting added to its priority), within
    0..``policy.admin_boost_cap_hours``: the reorder."""
    if not 0 <= hours <= policy.admin_boost_cap_hours:
        raise BoostOutOfRange(hours, policy.admin_boost_cap_hours)
    asked = {"boost_hours": hours}
    request, replay = _act(conn, request_id, "boost", asked, actor=actor, reason=reason, now=now, key=key)
    if replay is not None:
        return replay
    assert request is not None
    store.reorder(conn, request_id, hours)
    return _record(conn, request_id, "boost", actor=actor, reason=reason, before={"boost_hours": request.boost_hours},
                   after={"asked": asked, "boost_hours": hours}, now=now, key=key)


def cancel_as(conn: Connection, request_id: int, *, actor: str, reason: str, now: datetime,
              key: str | None = None) -> Action:
    """End any live request; the user sees who ended it and why in its reason."""
    request, replay = _act(conn, request_id, "cancel", {}, actor=actor, reason=reason, now=now, key=key)
    if replay is not None:
        return replay
    assert request is not None
    store.end(conn, request_id, f"cancelled by {actor}: {reason}"[:200], now=now)
    return _record(conn, request_id, "cancel", actor=actor, reason=reason, before={"state": request.state.value},
                   after={"asked": {}, "state": State.ENDED.value}, now=now, key=key)


def extend(conn: Connection, request_id: int, hours: Decimal, *, actor: str, reason: str, policy: Policy,
           now: datetime, key: str | None = None) -> Action:
    """Move a grant's end ``hours`` later (at most ``max_hours`` after its start), only when no queued request
    could use its GPUs (``store.extend``: ``ExtensionRefused`` otherwise)."""
    asked = {"hours": str(hours)}
    request, replay = _act(conn, request_id, "extend", asked, actor=actor, reason=reason, now=now, key=key)
    if replay is not None:
        return replay
    assert request is not None
    ends = store.extend(conn, request, hours, store.waiting_for(store.load(conn), request), policy=policy)
    return _record(conn, request_id, "extend", actor=actor, reason=reason, before={"ends": request.ends},
                   after={"asked": asked, "ends": ends}, now=now, key=key)


def approve(conn: Connection, request_id: int, *, actor: str, reason: str, now: datetime,
            key: str | None = None) -> Action:
    """Claim an offer on its user's behalf (say they run where no process shows on the GPU yet): it becomes a
    grant at once, as their own claim would."""
    request, replay = _act(conn, request_id, "approve", {}, actor=actor, reason=reason, now=now, key=key)
    if replay is not None:
        return replay
    assert request is not None
    granted = _grant(conn, request, now)
    return _record(conn, request_id, "approve", actor=actor, reason=reason, before={"state": request.state.value},
                   after={"asked": {}, "state": granted.state.value, "ends": granted.ends}, now=now, key=key)


def actions(conn: Connection, request_id: int) -> list[Action]:
    """The admin actions on one request, oldest first."""
    return [Action(*row) for row in conn.execute(text(
        "SELECT id, request_id, action, actor, reason, before, after, at FROM control.queue_action"
        " WHERE request_id = :r ORDER BY id"), {"r": request_id})]


# A filter's clause, only when it is given (constants: the values are bound); a target is ``gpu-request:ID``.
_PAGE_CLAUSES = {"actor": "actor = :actor", "action": "starts_with(action, :action)",
                 "target": "starts_with('gpu-request:' || request_id, :target)", "before": "id < :before"}


def action_page(conn: Connection, *, actor: str | None = None, action: str | None = None, target: str | None = None,
                before_id: int | None = None, limit: int = 100) -> list[Action]:
    """Every request's admin actions, newest first, with the audit logs' filters and keyset paging (actor exact,
    action and target prefixes, ids below ``before_id``: ``ledger.auditlog.page``, ``api.audit.page``), so the
    console's audit page reads this log as it reads the others."""
    given = {"actor": actor, "action": action, "target": target, "before": before_id}
    clauses = [_PAGE_CLAUSES[k] for k, v in given.items() if v is not None] or ["true"]
    return [Action(*row) for row in conn.execute(text(
        "SELECT id, request_id, action, actor, reason, before, after, at FROM control.queue_action"  # noqa: S608
        f" WHERE {' AND '.join(clauses)} ORDER BY id DESC LIMIT :limit"), {**given, "limit": limit})]


def week_of(day: datetime) -> tuple[datetime, datetime]:
    """The week (Monday 00:00 to the next Monday, in ``day``'s time zone) holding ``day``."""
    start = (day - timedelta(days=day.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=7)


@dataclass(frozen=True)
class IdleWeek:
    """The weekly idle-held report: GPU-hours per user from ``start`` to ``end`` (docs/queue.md)."""

    start: datetime
    end: datetime
    hours: Mapping[str, Decimal]


def idle_week(conn: Connection, day: date | None, *, zone: tzinfo, now: datetime) -> IdleWeek:
    """Idle-held GPU-hours per user over the week (Monday to Monday in ``zone``) holding the local ``day``, by
    default this one; this week's idle-held GPUs count until ``now``, not until its end."""
    start, end = week_of(now.astimezone(zone) if day is None else datetime.combine(day, datetime.min.time(), zone))
    return IdleWeek(start, end, store.idle_hours(conn, since=start, until=min(end, now)))


def idle_held(conn: Connection, user: str, *, since: datetime, until: datetime, now: datetime) -> Decimal:
    """``user``'s idle-held GPU-hours over a statement's ``[since, until)`` (``store.idle_hours``, two
    decimals): a period not over yet counts until ``now``, as this week's report does; 0.00 when none."""
    until = min(until, now)
    if until <= since:
        return Decimal("0.00")
    return store.idle_hours(conn, since=since, until=until, user=user).get(user, Decimal("0.00"))
