"""Nodes and enforcement. The collector's state is read from the views it publishes (``collector.node_status``,
``collector.gpu_status``, ``collector.decision_log``: the API may not read its tables, and does not import it);
what admins change goes through ``control``: node edits (``control.nodes``, which the controller takes into its
registry at its next sync, laid over what it shows until then) and enforcement overrides
(``control.overrides``; their meaning: docs/api.md, "Enforcement overrides")."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from api import audit, render
from api.errors import ApiError, not_found, unprocessable
from api.operation import Call
from api.services import aware, services
from control import nodes, overrides

_NODE = ("name, address, port, region, remarks, listed, in_inventory, status, last_outcome, last_error,"
         " last_attempt_at, last_seen_at, machine_id, boot_id")
_NODE_KEYS = [c.strip() for c in _NODE.split(",")]


def _shown_value(v: Any) -> Any:
    return render.when(v) if isinstance(v, datetime) else v


def _node(row: Any) -> dict[str, Any]:
    return {k: _shown_value(v) for k, v in zip(_NODE_KEYS, row, strict=True)}


def _shown(conn: Connection, name: str | None = None) -> list[dict[str, Any]]:
    """The registry (one node's row, or all), with the edits the controller has not taken yet laid over it.
    The edits are read first: an edit taken meanwhile is then in both, and shows the same."""
    pending = nodes.by_node(nodes.pending(conn, None if name is None else [name]))
    where, params = ("", {}) if name is None else (" WHERE name = :n", {"n": name})
    rows = conn.execute(text(f"SELECT {_NODE} FROM collector.node_status{where} ORDER BY name"), params)  # noqa: S608 (constant column lists and clauses)
    return [nodes.lay_over(_node(r), pending.get(r[0], ())) for r in rows]


def _one(conn: Connection, name: str) -> dict[str, Any]:
    found = _shown(conn, name)
    if not found:
        raise not_found("node", name)
    return found[0]


def list_nodes(call: Call) -> Any:
    with services(call).read() as conn:
        return _shown(conn)


def get_node(call: Call) -> Any:
    name = call.params["name"]
    with services(call).read() as conn:
        node = _one(conn, name)
        gpus = [{"uuid": g[0], "index": g[1], "name": g[2], "memory_total_bytes": g[3], "state": g[4],
                 "seen_at": render.when(g[5])} for g in conn.execute(text(
                     "SELECT uuid, index, name, memory_total_bytes, state, seen_at FROM collector.gpu_status"
                     " WHERE node = :n ORDER BY index NULLS LAST, uuid"), {"n": name})]
    return {**node, "gpus": gpus}


def update_node(call: Call) -> Any:
    """The registry's admin fields (listed, region, remarks), as an edit the controller takes in at its next
    sync; the controller owns everything else."""
    name, changes = call.params["name"], dict(call.body)
    key = None if call.idempotency_key is None else f"api:{call.idempotency_key}"
    with services(call).write() as conn:
        nodes.lock(conn, name)
        before = _one(conn, name)
        try:
            if key is not None and nodes.replayed(conn, key, name, changes) is not None:
                return before  # the first request's edit is laid over the registry already
            nodes.edit(conn, name, changes, call.actor, key)
        except nodes.KeyReused as exc:
            raise ApiError(409, "idempotency_conflict", str(exc), {"key": call.idempotency_key,
                                                                  "edit_id": exc.edit.id}) from exc
        after = {**before, **changes}
        audit.record(conn, actor=call.actor, action="node.update", target=f"node:{name}",
                     before={k: before[k] for k in changes}, after={k: after[k] for k in changes},
                     request_id=call.request_id)
    return after


def decisions(call: Call) -> Any:
    p = call.params
    clauses = ["id > :after"] + [f"{k} = :{k}" for k in ("node", "billing_user") if p.get(k) is not None]
    limit = p.get("limit", 100)
    with services(call).read() as conn:
        rows = conn.execute(text(
            "SELECT id, tick_id, at, node, uid, linux_user, billing_user, tier, balance, verb, reason, dry_run,"  # noqa: S608 (constant column lists and clauses)
            f" outcome, exit_status, detail, finished_at, override_id, override_reason FROM collector.decision_log"
            f" WHERE {' AND '.join(clauses)}"
            " ORDER BY id LIMIT :limit"),
            {"after": p.get("cursor", 0), "node": p.get("node"), "billing_user": p.get("billing_user"),
             "limit": limit + 1}).all()
    keys = ("id", "tick_id", "at", "node", "uid", "linux_user", "billing_user", "tier", "balance", "verb", "reason",
            "dry_run", "outcome", "exit_status", "detail", "finished_at", "override_id", "override_reason")
    items = [{k: _shown_value(v) for k, v in zip(keys, r, strict=True)}
             for r in rows[:limit]]
    return {"items": items, "next_cursor": rows[limit - 1][0] if len(rows) > limit else None}


def _override(posted: overrides.Posted) -> dict[str, Any]:
    o = posted.override
    return {"id": o.id, "user": o.user, "action": o.action, "reason": o.reason,
            "until": render.when(o.until), "actor": posted.actor, "at": render.when(o.at)}


def list_overrides(call: Call) -> Any:
    with services(call).read() as conn:
        return [_override(o) for o in overrides.recent(conn)]


def create_override(call: Call) -> Any:
    svc, b = services(call), call.body
    svc.ledger.get_user(b["user"])   # UnknownUser -> 404
    until = aware(b["until"], "until") if b.get("until") is not None else None
    if until is not None and until <= datetime.now(UTC):
        # It would be over before the controller's next tick reads it: nothing it could apply.
        raise unprocessable("invalid_time", "until: must be in the future", field="until")
    with svc.write() as conn:
        out = _override(overrides.add(conn, b["user"], b["action"], b["reason"], until, call.actor))
        audit.record(conn, actor=call.actor, action="enforcement.override", target=f"user:{b['user']}",
                     before=None, after=out, request_id=call.request_id)
    return out
