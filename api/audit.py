"""Audit rows for the API's own mutations, written on the caller's connection so they commit or roll back
with the change they describe."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from ledger.auditlog import AuditRow


def record(conn: Connection, *, actor: str, action: str, target: str, before: Any, after: Any,
           request_id: str) -> None:
    conn.execute(
        text("INSERT INTO api.audit (actor, action, target, before, after, request_id)"
             " VALUES (:a, :act, :t, CAST(:b AS jsonb), CAST(:af AS jsonb), :r)"),
        {"a": actor, "act": action, "t": target, "b": _json(before), "af": _json(after), "r": request_id},
    )


def page(conn: Connection, *, actor: str | None = None, action: str | None = None, target: str | None = None,
         before_id: int | None = None, limit: int = 100) -> list[AuditRow]:
    """The API's own audit rows (tokens, settings, nodes, overrides), newest first: the same filters and keyset
    paging as ``ledger.auditlog.page`` (actor exact, action and target prefixes, ids below ``before_id``), so
    the console's audit page reads either log the same way without reading this table itself."""
    given = {"actor": actor, "action": action, "target": target, "before": before_id}
    clauses = [_CLAUSES[k] for k, v in given.items() if v is not None] or ["true"]
    rows = conn.execute(
        text("SELECT id, at, actor, action, target, before, after, request_id FROM api.audit"  # noqa: S608
             f" WHERE {' AND '.join(clauses)} ORDER BY id DESC LIMIT :limit"), {**given, "limit": limit})
    return [AuditRow(*r) for r in rows]


# A filter's clause, only when it is given (constants: the values are bound).
_CLAUSES = {"actor": "actor = :actor", "action": "starts_with(action, :action)",
            "target": "starts_with(target, :target)", "before": "id < :before"}


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=str, sort_keys=True)
