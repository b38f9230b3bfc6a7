"""The admin audit trail: one append-only row per admin operation, written in that operation's transaction."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from ledger.journal import canonical_json


def record(conn: Connection, *, actor: str, action: str, target: str, before: Mapping[str, Any] | None,
           after: Mapping[str, Any] | None, request_id: str | None) -> None:
    conn.execute(
        text("INSERT INTO ledger.admin_audit (actor, action, target, before, after, request_id)"
             " VALUES (:actor, :action, :target, CAST(:before AS jsonb), CAST(:after AS jsonb), :rid)"),
        {"actor": actor, "action": action, "target": target,
         "before": None if before is None else canonical_json(dict(before)),
         "after": None if after is None else canonical_json(dict(after)), "rid": request_id},
    )


@dataclass(frozen=True)
class AuditRow:
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None
    request_id: str | None


def page(conn: Connection, *, actor: str | None = None, action: str | None = None, target: str | None = None,
         before_id: int | None = None, limit: int = 100) -> list[AuditRow]:
    """Newest first, ``limit`` rows with ids below ``before_id`` (the last id of the previous page): keyset
    paging, so a page does not shift while rows are added. ``action`` and ``target`` match as prefixes
    (``user.`` finds every user change), ``actor`` exactly."""
    rows = conn.execute(
        text("SELECT id, at, actor, action, target, before, after, request_id FROM ledger.admin_audit"
             " WHERE (CAST(:actor AS text) IS NULL OR actor = :actor)"
             " AND (CAST(:action AS text) IS NULL OR starts_with(action, :action))"
             " AND (CAST(:target AS text) IS NULL OR starts_with(target, :target))"
             " AND (CAST(:before AS bigint) IS NULL OR id < :before)"
             " ORDER BY id DESC LIMIT :limit"),
        {"actor": actor, "action": action, "target": target, "before": before_id, "limit": limit})
    return [AuditRow(*r) for r in rows]
