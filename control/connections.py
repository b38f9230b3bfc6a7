""""Test connection now" (docs/api.md): the API cannot open SSH (it imports only ``control`` and ``ledger``), so a
request is a row of ``control.connection_test`` that the active controller claims (``started_at``), runs (a
connection and ``sample``) and finishes (``finished_at``, ``outcome``, ``detail``); the caller polls the row."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

# Results are for the admin who asked; the request itself stays in the API's audit. Pruned as new requests come.
RETENTION_DAYS = 30
_COLUMNS = "id, node, requested_by, request_id, requested_at, started_at, finished_at, outcome, detail"


@dataclass(frozen=True)
class ConnectionTest:
    id: int
    node: str
    requested_by: str
    request_id: str
    requested_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    # ok, failed, hostkey_mismatch, timeout or unknown_node once finished
    outcome: str | None
    detail: Any

    @property
    def status(self) -> str:
        return "done" if self.finished_at is not None else "running" if self.started_at is not None else "pending"


def _test(row: Sequence[Any]) -> ConnectionTest:
    test_id, node, requested_by, request_id, requested_at, started_at, finished_at, outcome, detail = row
    return ConnectionTest(int(test_id), str(node), str(requested_by), str(request_id), requested_at, started_at,
                          finished_at, outcome, detail)


def request(conn: Connection, node: str, requested_by: str, request_id: str) -> ConnectionTest:
    """Queue a test of ``node`` (the caller checks that the registry has it), pruning finished tests past
    their retention."""
    conn.execute(text("DELETE FROM control.connection_test WHERE finished_at < now() - make_interval(days => :d)"),
                 {"d": RETENTION_DAYS})
    return _test(conn.execute(text(
        "INSERT INTO control.connection_test (node, requested_by, request_id) VALUES (:n, :by, :r)"  # noqa: S608 (constant column list)
        f" RETURNING {_COLUMNS}"), {"n": node, "by": requested_by, "r": request_id}).one())


def get(conn: Connection, test_id: int) -> ConnectionTest | None:
    row = conn.execute(text(f"SELECT {_COLUMNS} FROM control.connection_test WHERE id = :i"),  # noqa: S608 (constant column list)
                       {"i": test_id}).one_or_none()
    return None if row is None else _test(row)


def claim(conn: Connection, stale_s: float, limit: int) -> list[tuple[int, str]]:
    """(id, node) of up to ``limit`` tests nobody runs, oldest first, marked started: never claimed, or claimed
    more than ``stale_s`` seconds ago by a controller that did not finish them (it died)."""
    rows = conn.execute(text(
        "UPDATE control.connection_test SET started_at = now() WHERE id IN ("
        " SELECT id FROM control.connection_test WHERE finished_at IS NULL AND (started_at IS NULL"
        " OR started_at < now() - make_interval(secs => :stale)) ORDER BY id LIMIT :n FOR UPDATE SKIP LOCKED)"
        " RETURNING id, node"), {"stale": stale_s, "n": limit})
    return sorted((int(r.id), str(r.node)) for r in rows)


def finish(conn: Connection, test_id: int, outcome: str, detail: Mapping[str, Any]) -> None:
    conn.execute(text(
        "UPDATE control.connection_test SET finished_at = now(), outcome = :outcome, detail = CAST(:detail AS jsonb)"
        " WHERE id = :id"), {"id": test_id, "outcome": outcome, "detail": json.dumps(dict(detail))})
