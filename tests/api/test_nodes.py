"""The node registry as the API shows and edits it: it reads what the collector publishes and writes edits
through control; the answer to a PATCH shows the new value at once, the controller's next sync honours it, and
a later ops change of the same field in the inventory wins."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from collector.nodes.registry import NodeReport, record_tick, sync_inventory
from collector.types import Node, Outcome
from control.nodes import TABLE
from control.presence import ControlTable
from tests.api.conftest import ApiDatabase, Tokens, bearer
from tests.collector.samples import GPU0, sample

NODE = Node(name="gpu01", address="10.0.0.1", region="lab-a", remarks="rack 3")


def _sync(api_db: ApiDatabase, *inventory: Node) -> frozenset[str]:
    """The controller's inventory sync, as the app role it logs in with."""
    engine = create_engine(api_db.app_url, poolclass=NullPool)
    with engine.begin() as conn:
        listed = sync_inventory(conn, list(inventory), ControlTable(TABLE, "node edits"))
    engine.dispose()
    return listed


def _shown(client: httpx.Client, token: str) -> dict[str, tuple[str, str, bool]]:
    r = client.get("/v1/nodes", headers=bearer(token))
    assert r.status_code == 200, r.text
    return {n["name"]: (n["region"], n["remarks"], n["listed"]) for n in r.json()}


def test_an_edit_shows_at_once_holds_at_the_next_sync_and_yields_to_ops(client: httpx.Client, issued: Tokens,
                                                                        api_db: ApiDatabase) -> None:
    _sync(api_db, NODE, replace(NODE, name="gpu02"))
    r = client.patch("/v1/nodes/gpu01", headers=bearer(issued.operator), json={"region": "lab-b", "listed": False})
    assert r.status_code == 200, r.text
    assert (r.json()["name"], r.json()["region"], r.json()["listed"], r.json()["address"]) == (
        "gpu01", "lab-b", False, "10.0.0.1")
    assert _shown(client, issued.auditor) == {"gpu01": ("lab-b", "rack 3", False), "gpu02": ("lab-a", "rack 3", True)}
    assert client.get("/v1/nodes/gpu01", headers=bearer(issued.admin)).json()["region"] == "lab-b"

    assert _sync(api_db, NODE, replace(NODE, name="gpu02")) == {"gpu02"}   # the next tick skips gpu01
    assert _shown(client, issued.auditor)["gpu01"] == ("lab-b", "rack 3", False)
    _sync(api_db, replace(NODE, region="lab-c"), replace(NODE, name="gpu02"))
    assert _shown(client, issued.auditor)["gpu01"] == ("lab-c", "rack 3", False)

    with create_engine(api_db.admin_url, poolclass=NullPool).connect() as conn:
        audited = conn.execute(text("SELECT actor, before, after FROM api.audit WHERE action = 'node.update'")).one()
    assert tuple(audited) == ("api:operator-x", {"region": "lab-a", "listed": True},
                              {"region": "lab-b", "listed": False})


def test_a_node_with_its_gpus_and_unknown_nodes(client: httpx.Client, issued: Tokens, api_db: ApiDatabase) -> None:
    _sync(api_db, NODE)
    engine = create_engine(api_db.app_url, poolclass=NullPool)
    at = datetime(2026, 3, 1, tzinfo=UTC)
    with engine.begin() as conn:
        record_tick(conn, [NodeReport("gpu01", Outcome.OK, at, sample=sample(60))])
    engine.dispose()
    node = client.get("/v1/nodes/gpu01", headers=bearer(issued.operator)).json()
    assert (node["status"], node["last_seen_at"], node["machine_id"]) == ("connected", at.isoformat(), "m1")
    assert [(g["uuid"], g["index"]) for g in node["gpus"]][0] == (GPU0, 0)
    for method in ("get", "patch"):
        r = client.request(method, "/v1/nodes/gpu99", headers=bearer(issued.admin),
                           json={"remarks": "x"} if method == "patch" else None)
        assert (r.status_code, r.json()["error"]["code"]) == (404, "unknown_node"), method
    assert client.patch("/v1/nodes/gpu01", headers=bearer(issued.auditor), json={"remarks": "x"}).status_code == 403


def test_health_ages_the_last_tick(client: httpx.Client, api_db: ApiDatabase) -> None:
    assert client.get("/healthz").json()["last_tick_age_seconds"] is None
    engine = create_engine(api_db.app_url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO collector.tick (controller, dry_run, started_at)"
                          " VALUES ('c', false, now() - interval '90 seconds')"))
    engine.dispose()
    assert 89 <= client.get("/healthz").json()["last_tick_age_seconds"] < 120


def _edits(api_db: ApiDatabase) -> list[tuple[str, str | None, str | None]]:
    with create_engine(api_db.admin_url, poolclass=NullPool).connect() as conn:
        return [tuple(r) for r in conn.execute(text("SELECT node, region, idempotency_key FROM control.node_edit"
                                                    " ORDER BY id"))]


def test_an_edit_retried_with_its_key_is_stored_and_audited_once(client: httpx.Client, issued: Tokens,
                                                                 api_db: ApiDatabase) -> None:
    _sync(api_db, NODE, replace(NODE, name="gpu02"))
    once = {"Idempotency-Key": "edit-1", **bearer(issued.operator)}
    first = client.patch("/v1/nodes/gpu01", headers=once, json={"region": "lab-b"})
    again = client.patch("/v1/nodes/gpu01", headers=once, json={"region": "lab-b"})
    assert (first.status_code, again.status_code) == (200, 200), again.text
    assert first.json() == again.json()
    assert _edits(api_db) == [("gpu01", "lab-b", "api:edit-1")]
    # The same key for another edit (other fields, another node) is refused and stores nothing.
    for name, body in (("gpu01", {"region": "lab-c"}), ("gpu02", {"region": "lab-b"})):
        r = client.patch(f"/v1/nodes/{name}", headers=once, json=body)
        assert (r.status_code, r.json()["error"]["code"]) == (409, "idempotency_conflict"), r.text
    bad = client.patch("/v1/nodes/gpu01", headers={"Idempotency-Key": "no spaces", **bearer(issued.operator)},
                       json={"region": "lab-d"})
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "bad_idempotency_key")
    # Without a key every PATCH is an edit of its own, as before.
    for _ in range(2):
        r = client.patch("/v1/nodes/gpu01", headers=bearer(issued.operator), json={"remarks": "r"})
        assert r.status_code == 200, r.text
    assert _edits(api_db)[1:] == [("gpu01", None, None), ("gpu01", None, None)]
    with create_engine(api_db.admin_url, poolclass=NullPool).connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM api.audit WHERE action = 'node.update'")).scalar() == 3
