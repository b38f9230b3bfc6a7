"""Nodes and enforcement, read from (and, for the registry's admin fields, written to) the controller's
tables through SQL: the API does not import the collector. Overrides go to ``api.enforcement_override``,
which the controller reads (their meaning: docs/api.md, "Enforcement overrides")."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text

from api import audit
from api.errors import not_found, unprocessable
from api.operation import Call
from api.services import aware, services

_NODE = ("name, address, port, region, remarks, listed, in_inventory, status, last_outcome, last_error,"
         " last_attempt_at, last_seen_at, machine_id, boot_id")
_NODE_KEYS = [c.strip() for c in _NODE.split(",")]


def _node(row: Any) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in zip(_NODE_KEYS, row, strict=True)}


def list_nodes(call: Call) -> Any:
    with services(call).read() as conn:
        return [_node(r) for r in conn.execute(text(f"SELECT {_NODE} FROM collector.node ORDER BY name"))]  # noqa: S608 (constant column lists and clauses)


def get_node(call: Call) -> Any:
    name = call.params["name"]
    with services(call).read() as conn:
        row = conn.execute(text(f"SELECT {_NODE} FROM collector.node WHERE name = :n"), {"n": name}).one_or_none()  # noqa: S608 (constant column lists and clauses)
        if row is None:
            raise not_found("node", name)
        gpus = [{"uuid": g[0], "index": g[1], "name": g[2], "memory_total_bytes": g[3], "state": g[4],
                 "seen_at": g[5].isoformat()} for g in conn.execute(text(
                     "SELECT uuid, index, name, memory_total_bytes, state, seen_at FROM collector.gpu"
                     " WHERE node = :n ORDER BY index NULLS LAST, uuid"), {"n": name})]
    return {**_node(row), "gpus": gpus}


def update_node(call: Call) -> Any:
    """The registry's admin fields (listed, region, remarks); the controller owns everything else."""
    name, changes = call.params["name"], dict(call.body)
    with services(call).write() as conn:
        row = conn.execute(text(f"SELECT {_NODE} FROM collector.node WHERE name = :n FOR UPDATE"),  # noqa: S608 (constant column lists and clauses)
                           {"n": name}).one_or_none()
        if row is None:
            raise not_found("node", name)
        before = _node(row)
        if changes:
            sets = ", ".join(f"{k} = :{k}" for k in changes)   # keys are the body schema's three fields
            conn.execute(text(f"UPDATE collector.node SET {sets} WHERE name = :n"), {**changes, "n": name})  # noqa: S608
        after = _node(conn.execute(text(f"SELECT {_NODE} FROM collector.node WHERE name = :n"), {"n": name}).one())  # noqa: S608 (constant column lists and clauses)
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
            f" outcome, exit_status, detail, finished_at, override_id, override_reason FROM collector.decision"
            f" WHERE {' AND '.join(clauses)}"
            " ORDER BY id LIMIT :limit"),
            {"after": p.get("cursor", 0), "node": p.get("node"), "billing_user": p.get("billing_user"),
             "limit": limit + 1}).all()
    keys = ("id", "tick_id", "at", "node", "uid", "linux_user", "billing_user", "tier", "balance", "verb", "reason",
            "dry_run", "outcome", "exit_status", "detail", "finished_at", "override_id", "override_reason")
    items = [{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in zip(keys, r, strict=True)}
             for r in rows[:limit]]
    return {"items": items, "next_cursor": rows[limit - 1][0] if len(rows) > limit else None}


def list_overrides(call: Call) -> Any:
    with services(call).read() as conn:
        rows = conn.execute(text("SELECT id, billing_user, action, reason, until, actor, at"
                                 " FROM api.enforcement_override ORDER BY id DESC LIMIT 500")).all()
    return [_override(r) for r in rows]


def _override(r: Any) -> dict[str, Any]:
    return {"id": r[0], "user": r[1], "action": r[2], "reason": r[3],
            "until": r[4].isoformat() if r[4] else None, "actor": r[5], "at": r[6].isoformat()}


def create_override(call: Call) -> Any:
    svc, b = services(call), call.body
    svc.ledger.get_user(b["user"])   # UnknownUser -> 404
    until = aware(b["until"], "until") if b.get("until") is not None else None
    if until is not None and until <= datetime.now(UTC):
        # It would be over before the controller's next tick reads it: nothing it could apply.
        raise unprocessable("invalid_time", "until: must be in the future", field="until")
    with svc.write() as conn:
        row = conn.execute(text(
            "INSERT INTO api.enforcement_override (billing_user, action, reason, until, actor)"
            " VALUES (:u, :a, :r, :t, :actor) RETURNING id, billing_user, action, reason, until, actor, at"),
            {"u": b["user"], "a": b["action"], "r": b["reason"], "t": until, "actor": call.actor}).one()
        out = _override(row)
        audit.record(conn, actor=call.actor, action="enforcement.override", target=f"user:{b['user']}",
                     before=None, after=out, request_id=call.request_id)
    return out
