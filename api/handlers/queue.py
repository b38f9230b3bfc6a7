"""The GPU queue (issue #15, docs/queue.md "API, CLI and console"): a user's own requests, and the admins' and
operators' list, actions and idle-held report. The queue's rules and writes are ``control.queue`` (``admin``
for everything asked between ticks); here: who the caller is, the GPUs the controller last saw (the catalog a
request is checked against, from the collector's published ``gpu_status`` view), the queue's policy (the
settings version in force, read in each operation's own transaction: the one the controller's tick runs by),
and the answers' shape.

A user's identity is the caller's billing user (the token's, or the console session's), never a name in the
body: a token without one (an admin's, say) files nothing (409 ``no_billing_user``)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from api import render
from api.errors import ApiError, unprocessable
from api.operation import Call
from api.services import services
from control import versions
from control.queue import admin, store
from control.queue.intake import Catalog, Refused
from control.queue.records import GpuRef, Policy, State
from control.settings import in_force
from ledger import directory

# The intake's refusals name their field in words (control.queue.intake.check); the answer names it as data.
_FIELDS = ((re.compile(r"^(models|unknown GPU model)"), "models"), (re.compile(r"^unknown node"), "node"),
           (re.compile(r"^(count|no node has|at most \d+ GPUs)"), "count"), (re.compile(r"^hours"), "hours"))


def _now() -> datetime:
    return datetime.now(UTC)


def catalog(conn: Connection) -> Catalog:
    """The GPUs the controller knows (each node's last sample), by node and model."""
    rows = conn.execute(text("SELECT node, index AS gpu_index, name FROM collector.gpu_status"
                            " WHERE index IS NOT NULL"))
    return Catalog.of([GpuRef(r.node, int(r.gpu_index), r.name) for r in rows])


def policy(call: Call, conn: Connection) -> Policy:
    """The queue's policy of the settings version in force (``control.settings``: Policy's defaults for the
    keys it leaves out, and for everything when no version applies)."""
    return in_force(versions.newest(conn), services(call).ledger.config.thresholds).queue_policy()


def _gpu(g: GpuRef) -> dict[str, Any]:
    return {"node": g.node, "index": g.index, "model": g.model}


def shown(s: admin.Shown) -> dict[str, Any]:
    """One request as the API answers it: what it asks, where it stands (the position and ETA with their basis
    while queued, the offer's expiry, the lease's end) and its GPUs (held while queued, offered, granted)."""
    r, st = s.request, s.standing
    return {"id": r.id, "user": r.user, "project": r.project, "models": sorted(r.models), "count": r.count,
            "hours": str(r.hours), "node": r.node, "state": r.state.value, "created_at": render.when(r.created_at),
            "position": st.position, "eta": render.when(st.eta), "eta_basis": st.basis,
            "offer_expires": render.when(r.offer_expires), "granted_at": render.when(r.granted_at),
            "ends": render.when(r.ends), "ended_at": render.when(st.ended_at), "boost_hours": r.boost_hours,
            "reason": r.reason, "gpus": [_gpu(g) for g in r.gpus]}


def _action(a: admin.Action) -> dict[str, Any]:
    return {"id": a.id, "request_id": a.request_id, "action": a.action, "actor": a.actor, "reason": a.reason,
            "before": dict(a.before), "after": {k: v for k, v in a.after.items() if k != "asked"},
            "at": render.when(a.at), "replayed": a.replayed}


def _caller(call: Call) -> str:
    user = call.principal.billing_user if call.principal else None
    if user is None:
        raise ApiError(409, "no_billing_user", "this token (or session) has no billing user to queue for",
                       {"actor": call.actor})
    return user


def _key(call: Call) -> str | None:
    """The caller's idempotency key, namespaced by door (a console form's key starts ``console-`` already)."""
    key = call.idempotency_key
    return None if key is None else key if key.startswith("console-") else f"api:{key}"


def _refused(exc: Refused) -> ApiError:
    field = next((f for pattern, f in _FIELDS if pattern.match(exc.reason)), None)
    return unprocessable("request_refused", exc.reason, **({"field": field} if field else {}))


def _queue_error(exc: store.QueueError) -> ApiError:
    if isinstance(exc, store.UnknownRequest):
        return ApiError(404, "unknown_gpu_request", str(exc), {"request_id": exc.request_id})
    if isinstance(exc, store.ExtensionRefused):
        return ApiError(409, "extension_refused", str(exc), {"request_id": exc.request_id, "waiting": exc.waiting})
    if isinstance(exc, admin.NotOffered):
        return ApiError(409, "not_offered", str(exc), {"request_id": exc.request_id, "state": exc.state})
    if isinstance(exc, admin.BoostOutOfRange):
        return unprocessable("boost_out_of_range", str(exc), field="boost_hours", cap=exc.cap)
    assert isinstance(exc, admin.KeyReused)
    return ApiError(409, "idempotency_conflict", str(exc), {"request_id": exc.request_id})


def _one(conn: Connection, request_id: int) -> dict[str, Any]:
    found = store.get(conn, request_id)
    if found is None:
        raise _queue_error(store.UnknownRequest(request_id))
    return shown(admin.shown(conn, [found])[0])


# -- the caller's own requests


def mine(call: Call) -> Any:
    """The caller's live requests and those that ended in the last 7 days, oldest first."""
    user = _caller(call)
    with services(call).read() as conn:
        found = admin.listing(conn, now=_now(), user=user)
        return {"user": user, "requests": [shown(s) for s in admin.shown(conn, found)]}


def file_request(call: Call) -> Any:
    user = _caller(call)
    body = {k: call.body[k] for k in ("models", "count", "hours", "node") if k in call.body}
    with services(call).write() as conn:
        project = directory.get_user(conn, user).project
        try:
            request, _ = admin.request(conn, user=user, project=project, body=body, catalog=catalog(conn),
                                       policy=policy(call, conn), now=_now(), key=_key(call))
        except Refused as exc:
            raise _refused(exc) from exc
        except store.QueueError as exc:
            raise _queue_error(exc) from exc
        return shown(admin.shown(conn, [request])[0])


def cancel_mine(call: Call) -> Any:
    user, rid = _caller(call), call.params["request_id"]
    with services(call).write() as conn:
        try:
            admin.cancel(conn, rid, user=user, now=_now())
        except store.QueueError as exc:
            raise _queue_error(exc) from exc
        return _one(conn, rid)


def release_mine(call: Call) -> Any:
    """One grant or offer (``request_id``), or every one of the caller's."""
    user = _caller(call)
    with services(call).write() as conn:
        try:
            ids = admin.release(conn, user=user, now=_now(), request_id=call.body.get("request_id"))
        except store.QueueError as exc:
            raise _queue_error(exc) from exc
        return {"released": ids}


def claim_mine(call: Call) -> Any:
    user, rid = _caller(call), call.params["request_id"]
    with services(call).write() as conn:
        try:
            granted = admin.claim(conn, rid, user=user, now=_now())
        except store.QueueError as exc:
            raise _queue_error(exc) from exc
        return shown(admin.shown(conn, [granted])[0])


# -- admins and operators


def list_requests(call: Call) -> Any:
    p = call.params
    state = State(p["state"]) if p.get("state") else None
    with services(call).read() as conn:
        found = admin.listing(conn, now=_now(), user=p.get("user"), state=state, model=p.get("model"),
                              node=p.get("node"))
        return [shown(s) for s in admin.shown(conn, found)]


def get_request(call: Call) -> Any:
    rid = call.params["request_id"]
    with services(call).read() as conn:
        return {**_one(conn, rid), "actions": [_action(a) for a in admin.actions(conn, rid)]}


def _act(call: Call, run: Any) -> Any:
    """Run one admin action (``run(conn, now, key, policy)``) and answer the request as it stands, with the
    action."""
    rid = call.params["request_id"]
    with services(call).write() as conn:
        try:
            action = run(conn, _now(), _key(call), policy(call, conn))
        except store.QueueError as exc:
            raise _queue_error(exc) from exc
        return {"request": _one(conn, rid), "action": _action(action)}


def boost(call: Call) -> Any:
    b = call.body
    return _act(call, lambda conn, now, key, policy: admin.boost(
        conn, call.params["request_id"], b["boost_hours"], actor=call.actor, reason=b["reason"], policy=policy,
        now=now, key=key))


def cancel(call: Call) -> Any:
    return _act(call, lambda conn, now, key, _: admin.cancel_as(
        conn, call.params["request_id"], actor=call.actor, reason=call.body["reason"], now=now, key=key))


def extend(call: Call) -> Any:
    b = call.body
    return _act(call, lambda conn, now, key, policy: admin.extend(
        conn, call.params["request_id"], Decimal(b["hours"]), actor=call.actor, reason=b["reason"], policy=policy,
        now=now, key=key))


def approve(call: Call) -> Any:
    return _act(call, lambda conn, now, key, _: admin.approve(
        conn, call.params["request_id"], actor=call.actor, reason=call.body["reason"], now=now, key=key))


def idle_report(call: Call) -> Any:
    """Idle-held GPU-hours per user over one week (Monday to Monday in the ledger's time zone): the week holding
    ``week`` (a local day), by default this one (so far)."""
    svc = services(call)
    with svc.read() as conn:
        week = admin.idle_week(conn, call.params.get("week"), zone=svc.ledger.config.timezone, now=_now())
    return {"start": render.when(week.start), "end": render.when(week.end),
            "users": [{"user": u, "idle_gpu_hours": str(h)} for u, h in sorted(week.hours.items())]}
