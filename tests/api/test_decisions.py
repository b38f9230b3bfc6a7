"""The enforcement log as the API shows it: what the controller decided, and the admin override behind it."""

from __future__ import annotations

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tests.api.conftest import ApiDatabase, Tokens, bearer


def _decide(api_db: ApiDatabase, user: str, verb: str, override: tuple[int, str] | None = None) -> None:
    engine = create_engine(api_db.admin_url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO collector.decision (node, uid, linux_user, billing_user, tier, balance, verb, reason,"
            " dry_run, outcome, override_id, override_reason)"
            " VALUES ('gpu01', 1001, :u, :u, 'blocked', -5000000, :v, 'tier blocked', false, 'applied', :o, :r)"),
            {"u": user, "v": verb, "o": override[0] if override else None, "r": override[1] if override else None})
    engine.dispose()


def test_decisions_name_their_override_and_page(client: httpx.Client, issued: Tokens, api_db: ApiDatabase) -> None:
    _decide(api_db, "alice", "gpu-unblock 1001", (7, "paper deadline"))
    _decide(api_db, "bob", "gpu-block 1002")
    _decide(api_db, "alice", "quota-clear 1001")
    first = client.get("/v1/enforcement/decisions", params={"billing_user": "alice", "limit": 1},
                       headers=bearer(issued.operator))
    assert first.status_code == 200, first.text
    (item,) = first.json()["items"]
    assert (item["verb"], item["override_id"], item["override_reason"]) == ("gpu-unblock 1001", 7, "paper deadline")
    rest = client.get("/v1/enforcement/decisions", headers=bearer(issued.operator),
                      params={"billing_user": "alice", "cursor": first.json()["next_cursor"]}).json()
    assert [(i["verb"], i["override_id"]) for i in rest["items"]] == [("quota-clear 1001", None)]
    assert rest["next_cursor"] is None
