"""The admin audit trail: one append-only row per admin operation, written in that operation's transaction."""

from __future__ import annotations

from collections.abc import Mapping
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
