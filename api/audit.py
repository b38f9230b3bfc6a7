"""Audit rows for the API's own mutations, written on the caller's connection so they commit or roll back
with the change they describe."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection


def record(conn: Connection, *, actor: str, action: str, target: str, before: Any, after: Any,
           request_id: str) -> None:
    conn.execute(
        text("INSERT INTO api.audit (actor, action, target, before, after, request_id)"
             " VALUES (:a, :act, :t, CAST(:b AS jsonb), CAST(:af AS jsonb), :r)"),
        {"a": actor, "act": action, "t": target, "b": _json(before), "af": _json(after), "r": request_id},
    )


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=str, sort_keys=True)
