"""A node's "test connection now". The API cannot open SSH (it imports only the ledger), so a request is
a row of ``api.connection_test`` that the controller claims (``started_at``), runs (a connection and
``sample``) and finishes (``finished_at``, ``outcome``, ``detail``); the caller polls the row."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from starlette.responses import JSONResponse

from api import audit
from api.errors import not_found
from api.operation import Call
from api.services import services

_COLUMNS = "id, node, requested_by, request_id, requested_at, started_at, finished_at, outcome, detail"
# Results are for the admin who asked; the request itself stays in api.audit. Pruned as new requests come.
RETENTION_DAYS = 30


def location(test_id: int) -> str:
    return f"/v1/connection-tests/{test_id}"


def _status(started: Any, finished: Any) -> str:
    return "done" if finished is not None else "running" if started is not None else "pending"


def _test(row: Any) -> dict[str, Any]:
    test_id, node, requested_by, request_id, requested, started, finished, outcome, detail = row
    return {"id": test_id, "node": node, "status": _status(started, finished), "outcome": outcome, "detail": detail,
            "requested_by": requested_by, "request_id": request_id, "requested_at": requested.isoformat(),
            "started_at": started and started.isoformat(), "finished_at": finished and finished.isoformat()}


def request_test(call: Call) -> Any:
    """Queue a test of a node of the registry; 202 with the request's id and where to poll it."""
    name = call.params["name"]
    with services(call).write() as conn:
        if conn.execute(text("SELECT 1 FROM collector.node WHERE name = :n"), {"n": name}).first() is None:
            raise not_found("node", name)
        conn.execute(text("DELETE FROM api.connection_test WHERE finished_at < now() - make_interval(days => :d)"),
                     {"d": RETENTION_DAYS})
        out = _test(conn.execute(text(
            f"INSERT INTO api.connection_test (node, requested_by, request_id) VALUES (:n, :by, :r)"  # noqa: S608 (constant column list)
            f" RETURNING {_COLUMNS}"), {"n": name, "by": call.actor, "r": call.request_id}).one())
        audit.record(conn, actor=call.actor, action="node.connection_test", target=f"node:{name}", before=None,
                     after={"id": out["id"]}, request_id=call.request_id)
    return JSONResponse(out, status_code=202, headers={"Location": location(out["id"])})


def get_test(call: Call) -> Any:
    test_id = call.params["test_id"]
    with services(call).read() as conn:
        row = conn.execute(text(f"SELECT {_COLUMNS} FROM api.connection_test WHERE id = :i"),  # noqa: S608 (constant column list)
                           {"i": test_id}).one_or_none()
    if row is None:
        raise not_found("connection_test", str(test_id))
    return _test(row)
