"""'Test connection now': the API queues a row, the controller (here: its SQL, as the app role) claims and
finishes it, and the API reports it pending, running, then done with the outcome."""

from __future__ import annotations

import json

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tests.api.conftest import ApiDatabase, Tokens, bearer


def _add_node(api_db: ApiDatabase, name: str) -> None:
    engine = create_engine(api_db.admin_url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO collector.node (name, address, port) VALUES (:n, '127.0.0.1', 22)"),
                     {"n": name})
    engine.dispose()


def test_controller_fills_a_requested_test(client: httpx.Client, issued: Tokens, api_db: ApiDatabase) -> None:
    _add_node(api_db, "gpu01")
    requested = client.post("/v1/nodes/gpu01/connection-tests", headers=bearer(issued.operator))
    assert requested.status_code == 202, requested.text
    test = requested.json()
    assert requested.headers["Location"] == f"/v1/connection-tests/{test['id']}"
    assert (test["node"], test["status"], test["outcome"], test["requested_by"]) == \
        ("gpu01", "pending", None, "api:operator-x")

    def poll() -> dict[str, object]:
        r = client.get(requested.headers["Location"], headers=bearer(issued.auditor))
        assert r.status_code == 200, r.text
        return dict(r.json())

    # The controller's side, as the app role it logs in with: claim the oldest unclaimed row, then finish it.
    controller = create_engine(api_db.app_url, poolclass=NullPool)
    with controller.begin() as conn:
        claimed = conn.execute(text(
            "UPDATE control.connection_test SET started_at = now() WHERE id = (SELECT id FROM control.connection_test"
            " WHERE started_at IS NULL ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id, node")).one()
    assert tuple(claimed) == (test["id"], "gpu01")
    assert poll()["status"] == "running"
    detail = {"latency_ms": 42, "error": None, "hostname": "gpu01.lab"}
    with controller.begin() as conn:
        conn.execute(text("UPDATE control.connection_test SET finished_at = now(), outcome = 'ok',"
                          " detail = CAST(:d AS jsonb) WHERE id = :i"), {"d": json.dumps(detail), "i": claimed[0]})
    controller.dispose()
    done = poll()
    assert (done["status"], done["outcome"], done["detail"]) == ("done", "ok", detail)
    assert done["finished_at"] is not None and done["request_id"] == requested.headers["X-Request-Id"]


def test_a_request_is_audited_and_unknown_nodes_refused(client: httpx.Client, issued: Tokens,
                                                        api_db: ApiDatabase) -> None:
    _add_node(api_db, "gpu02")
    unknown = client.post("/v1/nodes/gpu99/connection-tests", headers=bearer(issued.admin))
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "unknown_node")
    assert client.get("/v1/connection-tests/7", headers=bearer(issued.admin)).status_code == 404
    requested = client.post("/v1/nodes/gpu02/connection-tests", headers=bearer(issued.admin))
    assert requested.status_code == 202
    engine = create_engine(api_db.app_url, poolclass=NullPool)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT action, target, after, request_id FROM api.audit")).all()
        tests = conn.execute(text("SELECT count(*) FROM control.connection_test")).scalar_one()
    engine.dispose()
    assert [tuple(r) for r in rows] == [("node.connection_test", "node:gpu02", {"id": requested.json()["id"]},
                                         requested.headers["X-Request-Id"])]
    assert tests == 1


def test_finished_tests_past_retention_go_when_a_new_one_comes(client: httpx.Client, issued: Tokens,
                                                                api_db: ApiDatabase) -> None:
    _add_node(api_db, "gpu03")
    engine = create_engine(api_db.admin_url, poolclass=NullPool)
    with engine.begin() as conn:
        for age_days, finished in ((31, True), (29, True), (40, False)):
            conn.execute(text(
                "INSERT INTO control.connection_test (node, requested_by, request_id, requested_at, finished_at,"
                " outcome)"
                " VALUES ('gpu03', 'api:admin', :r, now() - make_interval(days => :a),"
                " CASE WHEN :f THEN now() - make_interval(days => :a) END, CASE WHEN :f THEN 'ok' END)"),
                {"r": f"old-{age_days}", "a": age_days, "f": finished})
    assert client.post("/v1/nodes/gpu03/connection-tests", headers=bearer(issued.admin)).status_code == 202
    with engine.connect() as conn:
        kept = conn.execute(text("SELECT request_id FROM control.connection_test WHERE node = 'gpu03'"
                                 " AND request_id LIKE 'old-%' ORDER BY request_id")).scalars().all()
    engine.dispose()
    assert kept == ["old-29", "old-40"]   # a test never finished is the controller's to finish, never pruned
