"""A node's "test connection now": a request of ``control.connections`` that the controller claims, runs (a
connection and ``sample``) and finishes; the caller polls it. Whether the node exists is the collector's
registry, read from the view it publishes (``collector.node_status``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from starlette.responses import JSONResponse

from api import audit, render
from api.errors import not_found
from api.operation import Call
from api.services import services
from control import connections


def location(test_id: int) -> str:
    return f"/v1/connection-tests/{test_id}"


def _test(t: connections.ConnectionTest) -> dict[str, Any]:
    return {"id": t.id, "node": t.node, "status": t.status, "outcome": t.outcome, "detail": t.detail,
            "requested_by": t.requested_by, "request_id": t.request_id, "requested_at": render.when(t.requested_at),
            "started_at": render.when(t.started_at), "finished_at": render.when(t.finished_at)}


def request_test(call: Call) -> Any:
    """Queue a test of a node of the registry; 202 with the request's id and where to poll it."""
    name = call.params["name"]
    with services(call).write() as conn:
        if conn.execute(text("SELECT 1 FROM collector.node_status WHERE name = :n"), {"n": name}).first() is None:
            raise not_found("node", name)
        out = _test(connections.request(conn, name, call.actor, call.request_id))
        audit.record(conn, actor=call.actor, action="node.connection_test", target=f"node:{name}", before=None,
                     after={"id": out["id"]}, request_id=call.request_id)
    return JSONResponse(out, status_code=202, headers={"Location": location(out["id"])})


def get_test(call: Call) -> Any:
    test_id = call.params["test_id"]
    with services(call).read() as conn:
        test = connections.get(conn, test_id)
    if test is None:
        raise not_found("connection_test", str(test_id))
    return _test(test)
