"""Settings versions, enforcement overrides and user updates: what the controller will read, and one audit
row per change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import text

from ledger.service import Ledger
from tests.api.conftest import Tokens, bearer


def test_settings_are_versioned_and_hold_only_keys_set(client: httpx.Client, issued: Tokens) -> None:
    admin = bearer(issued.admin)
    assert client.get("/v1/settings", headers=admin).json() == {"version": None, "settings": {}, "in_force": True,
                                                                "problem": None}
    first = client.put("/v1/settings", headers=admin, json={"kill_grace_seconds": 300, "reason": "pilot"})
    assert first.status_code == 200 and first.json()["settings"] == {"kill_grace_seconds": 300}
    # One threshold given: all three are stored, the others from the GPULEDGER_TIER_* in force (100/10/0).
    second = client.put("/v1/settings", headers=admin, json={"tier_warning": "50", "dry_run": True, "reason": "r"})
    assert second.json()["settings"] == {"kill_grace_seconds": 300, "dry_run": True, "tier_warning": "50.000000",
                                         "tier_limited": "10.000000", "tier_blocked": "0.000000"}
    bad = client.put("/v1/settings", headers=admin, json={"tier_limited": "60", "reason": "oops"})
    assert (bad.status_code, bad.json()["error"]["code"]) == (422, "invalid_settings")
    unknown = client.put("/v1/settings", headers=admin, json={"grace_period_seconds": 5, "reason": "old key"})
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (422, "unknown_field")
    assert second.json().pop("dropped") == {}
    shown = client.get("/v1/settings", headers=bearer(issued.operator)).json()
    assert shown == {k: v for k, v in second.json().items() if k != "dropped"}
    history = client.get("/v1/settings/history", headers=admin).json()
    assert [v["version"] for v in history] == [second.json()["version"], first.json()["version"]]


def test_overrides_need_a_future_until(client: httpx.Client, issued: Tokens) -> None:
    operator = bearer(issued.operator)
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    refused = client.post("/v1/enforcement/overrides", headers=operator,
                          json={"user": "alice", "action": "lift", "reason": "r", "until": past})
    assert (refused.status_code, refused.json()["error"]["code"]) == (422, "invalid_time")
    until = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    made = client.post("/v1/enforcement/overrides", headers=operator,
                       json={"user": "alice", "action": "lift", "reason": "paper deadline", "until": until})
    assert made.status_code == 201, made.text
    assert client.get("/v1/enforcement/overrides", headers=operator).json() == [made.json()]


def test_a_multi_field_patch_is_one_audited_change(client: httpx.Client, issued: Tokens, ledger: Ledger) -> None:
    ledger.add_project("vision", actor="test")
    r = client.patch("/v1/users/alice", headers=bearer(issued.admin),
                     json={"exempt": True, "credit_limit": "25", "project": "vision"})
    assert r.status_code == 200, r.text
    assert (r.json()["exempt"], r.json()["credit_limit"], r.json()["project"]) == (True, "25.000000", "vision")
    with ledger.engine.connect() as conn:
        rows = conn.execute(text("SELECT action, before, after, request_id FROM ledger.admin_audit"
                                 " WHERE target = 'user:alice' AND action <> 'user.add'")).all()
    assert [tuple(row) for row in rows] == [(
        "user.update", {"exempt": False, "credit_limit": None, "project": None},
        {"exempt": True, "credit_limit": 25_000_000, "project": "vision"}, r.headers["X-Request-Id"])]
    missing = client.patch("/v1/users/alice", headers=bearer(issued.admin), json={"exempt": False, "project": "nope"})
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "unknown_project")
    assert client.get("/v1/users/alice", headers=bearer(issued.admin)).json()["exempt"] is True


def test_balance_tiers_follow_the_settings_version_in_force(client: httpx.Client, issued: Tokens) -> None:
    admin = bearer(issued.admin)
    assert client.post("/v1/wallets/alice/recharge", headers=admin | {"Idempotency-Key": "tiers-1"},
                       json={"amount": "50", "memo": "m"}).is_success

    def tier() -> str:
        return str(client.get("/v1/wallets/alice/balance", headers=bearer(issued.alice)).json()["tier"])

    assert tier() == "warning"   # 50 against the process's thresholds (100 / 10 / 0)
    assert client.put("/v1/settings", headers=admin, json={"tier_warning": "40", "reason": "r"}).is_success
    assert tier() == "normal"
    strict = {"tier_warning": "500", "tier_limited": "200", "tier_blocked": "60", "reason": "r"}
    assert client.put("/v1/settings", headers=admin, json=strict).is_success
    assert tier() == "blocked"
