"""The GPU queue over the JSON API (docs/queue.md, "API, CLI and console"), on a real database with the
queue's real tick in between: a user files, is queued with a position and ETA, offered, claims, releases;
admins list, boost, cancel, extend and approve, each recorded with actor and reason; the idle-held report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import text

from control.queue import store
from ledger.service import Ledger
from tests.api.conftest import ApiDatabase, Tokens, bearer
from tests.api.queue_lab import A0, A1, H0, run_tick, seed


@pytest.fixture
def lab(api_db: ApiDatabase, issued: Tokens) -> Tokens:
    seed(api_db.admin_url)
    return issued


def _file(client: httpx.Client, token: str, body: dict[str, object], key: str | None = None) -> httpx.Response:
    headers = bearer(token) | ({"Idempotency-Key": key} if key else {})
    return client.post("/v1/me/gpu-requests", headers=headers, json=body)


def _mine(client: httpx.Client, token: str) -> dict[int, dict[str, object]]:
    r = client.get("/v1/me/gpu-requests", headers=bearer(token))
    assert r.status_code == 200, r.text
    return {q["id"]: q for q in r.json()["requests"]}


def test_a_user_is_queued_offered_granted_and_releases(client: httpx.Client, lab: Tokens, ledger: Ledger) -> None:
    filed = _file(client, lab.alice, {"models": ["H100"], "hours": "2.5"}, key="alice-h100")
    assert filed.status_code == 201, filed.text
    q = filed.json()
    assert (q["user"], q["state"], q["count"], q["hours"], q["models"], q["gpus"]) == (
        "alice", "queued", 1, "2.50", ["H100"], [])
    # A retry with the key files nothing new and answers the same request.
    again = _file(client, lab.alice, {"models": ["H100"], "hours": "2.5"}, key="alice-h100")
    assert (again.status_code, again.json()["id"]) == (201, q["id"])
    assert list(_mine(client, lab.alice)) == [q["id"]]

    run_tick(ledger)
    offered = _mine(client, lab.alice)[q["id"]]
    assert offered["state"] == "offered"
    assert offered["gpus"] == [{"node": "gpu02", "index": 0, "model": "H100"}]
    expires = datetime.fromisoformat(str(offered["offer_expires"]))
    assert timedelta(minutes=14) < expires - datetime.now(UTC) <= timedelta(minutes=15)

    claimed = client.post(f"/v1/me/gpu-requests/{q['id']}/claim", headers=bearer(lab.alice))
    assert claimed.status_code == 200, claimed.text
    ends = datetime.fromisoformat(claimed.json()["ends"])
    granted_at = datetime.fromisoformat(claimed.json()["granted_at"])
    assert (claimed.json()["state"], ends - granted_at) == ("granted", timedelta(hours=2, minutes=30))
    # A claim of a grant is refused with what the request is.
    again_claim = client.post(f"/v1/me/gpu-requests/{q['id']}/claim", headers=bearer(lab.alice))
    assert (again_claim.status_code, again_claim.json()["error"]["details"]["state"]) == (409, "granted")

    released = client.post("/v1/me/gpu-releases", headers=bearer(lab.alice), json={})
    assert released.json() == {"released": [q["id"]]}
    done = _mine(client, lab.alice)[q["id"]]
    assert (done["state"], done["reason"], done["gpus"]) == ("ended", "released", [])
    assert done["ended_at"] is not None


def test_a_queued_request_shows_its_position_and_eta_with_the_basis(client: httpx.Client, lab: Tokens,
                                                                     ledger: Ledger) -> None:
    bob = _file(client, lab.bob, {"models": ["H100"], "hours": 3}).json()
    run_tick(ledger)                        # offered
    run_tick(ledger, busy={H0: "bob"})      # bob's process on the offered GPU: the tick grants it
    assert _mine(client, lab.bob)[bob["id"]]["state"] == "granted"
    alice = _file(client, lab.alice, {"models": ["H100"]}).json()
    run_tick(ledger, busy={H0: "bob"})
    mine = _mine(client, lab.alice)[alice["id"]]
    assert (mine["state"], mine["position"]) == ("queued", 1)
    bob_ends = _mine(client, lab.bob)[bob["id"]]["ends"]
    assert mine["eta"] == bob_ends and mine["eta_basis"]
    # alice's request is not bob's to cancel, nor to see.
    assert client.post(f"/v1/me/gpu-requests/{alice['id']}/cancel", headers=bearer(lab.bob)).status_code == 404
    assert alice["id"] not in _mine(client, lab.bob)
    cancelled = client.post(f"/v1/me/gpu-requests/{alice['id']}/cancel", headers=bearer(lab.alice))
    assert (cancelled.status_code, cancelled.json()["state"], cancelled.json()["reason"]) == (200, "ended",
                                                                                               "cancelled")


@pytest.mark.parametrize(("body", "code", "field"), [
    ({"count": 0}, "validation_error", "count"),
    ({"count": "2"}, "validation_error", "count"),
    ({"hours": "1.234"}, "validation_error", "hours"),
    ({"hours": "200"}, "request_refused", "hours"),
    ({"models": ["V100"]}, "request_refused", "models"),
    ({"models": ["H100"], "count": 2}, "request_refused", "count"),
    ({"count": 9}, "request_refused", "count"),
    ({"node": "gpu09"}, "request_refused", "node"),
    ({"user": "bob"}, "unknown_field", "body"),     # the identity is the token's: the message names 'user'
    ({"models": "A100"}, "validation_error", "models"),
])
def test_a_bad_body_is_refused_naming_its_field_and_files_nothing(client: httpx.Client, lab: Tokens,
                                                                  ledger: Ledger, body: dict[str, object],
                                                                  code: str, field: str) -> None:
    r = _file(client, lab.alice, body)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert (error["code"], error["details"]["field"]) == (code, field), error
    with ledger.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM control.queue_request")).scalar_one() == 0


def test_a_key_reused_for_another_request_and_a_caller_without_a_billing_user(client: httpx.Client,
                                                                             lab: Tokens) -> None:
    assert _file(client, lab.alice, {"count": 1}, key="k1").status_code == 201
    reused = _file(client, lab.alice, {"count": 2}, key="k1")
    assert (reused.status_code, reused.json()["error"]["code"]) == (409, "idempotency_conflict")
    # The same key of another user is their own request.
    assert _file(client, lab.bob, {"count": 2}, key="k1").status_code == 201
    admin = _file(client, lab.admin, {})
    assert (admin.status_code, admin.json()["error"]["code"]) == (409, "no_billing_user")
    assert client.get("/v1/me/gpu-requests", headers=bearer(lab.auditor)).status_code == 409
    assert _file(client, lab.auditor, {}).status_code == 403


def test_the_queued_cap_is_refused_with_its_reason(client: httpx.Client, lab: Tokens) -> None:
    for _ in range(4):
        assert _file(client, lab.alice, {}).status_code == 201
    fifth = _file(client, lab.alice, {})
    assert (fifth.status_code, fifth.json()["error"]["message"]) == (422, "at most 4 queued requests per user")
    assert len(_mine(client, lab.alice)) == 4


def _act(client: httpx.Client, token: str, rid: int, verb: str, body: dict[str, object],
         key: str | None = None) -> httpx.Response:
    headers = bearer(token) | ({"Idempotency-Key": key} if key else {})
    return client.post(f"/v1/gpu-requests/{rid}/{verb}", headers=headers, json=body)


def test_admins_list_boost_and_cancel_each_recorded_with_actor_and_reason(client: httpx.Client, lab: Tokens,
                                                                         ledger: Ledger) -> None:
    a = _file(client, lab.alice, {"models": ["A100"]}).json()
    b = _file(client, lab.bob, {"models": ["H100"]}).json()
    listed = client.get("/v1/gpu-requests", headers=bearer(lab.auditor), params={"model": "H100"})
    assert [q["id"] for q in listed.json()] == [b["id"]]
    assert [q["id"] for q in client.get("/v1/gpu-requests", headers=bearer(lab.operator),
                                        params={"user": "alice"}).json()] == [a["id"]]

    boosted = _act(client, lab.operator, a["id"], "boost", {"boost_hours": 12, "reason": "deadline"}, key="b1")
    assert boosted.status_code == 200, boosted.text
    action = boosted.json()["action"]
    assert (action["actor"], action["reason"], action["before"], action["after"], action["replayed"]) == (
        "api:operator-x", "deadline", {"boost_hours": 0}, {"boost_hours": 12}, False)
    assert boosted.json()["request"]["boost_hours"] == 12
    replay = _act(client, lab.operator, a["id"], "boost", {"boost_hours": 12, "reason": "deadline"}, key="b1")
    assert (replay.json()["action"]["id"], replay.json()["action"]["replayed"]) == (action["id"], True)
    other = _act(client, lab.operator, a["id"], "boost", {"boost_hours": 13, "reason": "deadline"}, key="b1")
    assert (other.status_code, other.json()["error"]["code"]) == (409, "idempotency_conflict")
    over = _act(client, lab.admin, a["id"], "boost", {"boost_hours": 169, "reason": "x"})
    assert (over.status_code, over.json()["error"]["details"]["field"]) == (422, "boost_hours")
    no_reason = _act(client, lab.admin, a["id"], "cancel", {})
    assert (no_reason.status_code, no_reason.json()["error"]["details"]["field"]) == (422, "body")

    cancelled = _act(client, lab.admin, b["id"], "cancel", {"reason": "node under repair"})
    assert cancelled.json()["request"]["state"] == "ended"
    assert cancelled.json()["request"]["reason"] == "cancelled by api:admin-x: node under repair"
    again = _act(client, lab.admin, b["id"], "cancel", {"reason": "node under repair"})
    assert (again.status_code, again.json()["error"]["code"]) == (404, "unknown_gpu_request")
    shown = client.get(f"/v1/gpu-requests/{a['id']}", headers=bearer(lab.auditor)).json()
    assert [(x["action"], x["actor"], x["reason"]) for x in shown["actions"]] == [
        ("boost", "api:operator-x", "deadline")]
    assert _act(client, lab.alice, a["id"], "boost", {"boost_hours": 1, "reason": "me"}).status_code == 403
    assert _act(client, lab.auditor, a["id"], "cancel", {"reason": "x"}).status_code == 403


def test_extend_only_while_nobody_waits_and_approve_an_offer(client: httpx.Client, lab: Tokens,
                                                             ledger: Ledger) -> None:
    a = _file(client, lab.alice, {"models": ["A100"], "hours": 1}).json()
    run_tick(ledger)
    run_tick(ledger, busy={A0: "alice"})
    granted = _mine(client, lab.alice)[a["id"]]
    assert (granted["state"], granted["gpus"]) == ("granted", [{"node": "gpu01", "index": 0, "model": "A100"}])
    extended = _act(client, lab.admin, a["id"], "extend", {"hours": "2", "reason": "long run"})
    assert extended.status_code == 200, extended.text
    old, new = (datetime.fromisoformat(x) for x in (granted["ends"], extended.json()["request"]["ends"]))
    assert new - old == timedelta(hours=2)

    # bob takes the other A100 and leaves it busy; carol... alice asks for one more and waits for gpu01's A100s.
    b = _file(client, lab.bob, {"models": ["A100"]}).json()
    run_tick(ledger, busy={A0: "alice"})
    offer = _mine(client, lab.bob)[b["id"]]
    assert (offer["state"], offer["gpus"]) == ("offered", [{"node": "gpu01", "index": 1, "model": "A100"}])
    approved = _act(client, lab.operator, b["id"], "approve", {"reason": "runs in a container"})
    assert approved.status_code == 200, approved.text
    assert (approved.json()["request"]["state"], approved.json()["action"]["after"]["state"]) == ("granted",
                                                                                                  "granted")
    waiter = _file(client, lab.alice, {"models": ["A100"]}).json()
    run_tick(ledger, busy={A0: "alice", A1: "bob"})
    assert _mine(client, lab.alice)[waiter["id"]]["state"] == "queued"
    refused = _act(client, lab.admin, a["id"], "extend", {"hours": "1", "reason": "more"})
    assert (refused.status_code, refused.json()["error"]["code"], refused.json()["error"]["details"]["waiting"]) == (
        409, "extension_refused", 1)
    not_offer = _act(client, lab.admin, waiter["id"], "approve", {"reason": "x"})
    assert (not_offer.status_code, not_offer.json()["error"]["details"]["state"]) == (409, "queued")


def test_the_weekly_idle_held_report(client: httpx.Client, lab: Tokens, ledger: Ledger) -> None:
    a = _file(client, lab.alice, {"models": ["H100"]}).json()
    run_tick(ledger)
    run_tick(ledger, busy={H0: "alice"})
    since = datetime.now(UTC) - timedelta(minutes=90)
    with ledger.engine.begin() as conn:
        store.idle_update(conn, [(a["id"], "gpu02", 0, since, 1)], now=datetime.now(UTC))
    r = client.get("/v1/reports/idle-gpu-hours", headers=bearer(lab.auditor))
    assert r.status_code == 200, r.text
    report = r.json()
    start, end = (datetime.fromisoformat(report[k]) for k in ("start", "end"))
    zone = ledger.config.timezone
    assert end - start == timedelta(days=7) and start <= datetime.now(UTC) < end
    assert (start.astimezone(zone).weekday(), start.astimezone(zone).hour) == (0, 0)
    rows = {u["user"]: u["idle_gpu_hours"] for u in report["users"]}
    # 90 idle minutes so far (fewer when this week began less than 90 minutes ago), never the week's rest.
    assert rows == {"alice": "1.50"} if since >= start else set(rows) == {"alice"}
    assert client.post("/v1/me/gpu-releases", headers=bearer(lab.alice), json={"request_id": a["id"]}).json() == {
        "released": [a["id"]]}
    after = client.get("/v1/reports/idle-gpu-hours", headers=bearer(lab.admin),
                       params={"week": str(start.astimezone(zone).date())})
    assert after.json()["users"] == report["users"]
    last_week = client.get("/v1/reports/idle-gpu-hours", headers=bearer(lab.admin),
                           params={"week": str((start - timedelta(days=3)).astimezone(zone).date())}).json()
    assert last_week["users"] == ([] if since >= start else last_week["users"])
    assert client.get("/v1/reports/idle-gpu-hours", headers=bearer(lab.alice)).status_code == 403


def test_the_settings_version_in_force_sets_the_caps_the_api_refuses_by(client: httpx.Client, lab: Tokens) -> None:
    admin = bearer(lab.admin)
    a = _file(client, lab.alice, {"models": ["A100"], "count": 2}).json()
    assert a["count"] == 2                                  # the default cap is 8 GPUs per user
    assert _act(client, lab.admin, a["id"], "boost", {"boost_hours": 20, "reason": "x"}).status_code == 200
    put = client.put("/v1/settings", headers=admin, json={"queue_max_gpus_per_user": 1,
                                                          "queue_admin_boost_cap_hours": 10,
                                                          "queue_max_queued_per_user": 2, "reason": "a small lab"})
    assert put.status_code == 200, put.text
    two = _file(client, lab.bob, {"models": ["A100"], "count": 2})
    assert (two.status_code, two.json()["error"]["message"], two.json()["error"]["details"]["field"]) == (
        422, "at most 1 GPUs per user", "count")
    over = _act(client, lab.admin, a["id"], "boost", {"boost_hours": 11, "reason": "x"})
    assert (over.status_code, over.json()["error"]["code"], over.json()["error"]["details"]["cap"]) == (
        422, "boost_out_of_range", 10)
    assert _act(client, lab.admin, a["id"], "boost", {"boost_hours": 10, "reason": "x"}).status_code == 200
    assert _file(client, lab.bob, {}).status_code == 201
    assert _file(client, lab.bob, {}).status_code == 201
    third = _file(client, lab.bob, {})
    assert (third.status_code, third.json()["error"]["message"]) == (422, "at most 2 queued requests per user")


@pytest.mark.parametrize(("body", "code", "field"), [
    ({"queue_max_hours": "2"}, "invalid_settings", "queue_*_hours"),     # below the default hours, 4
    ({"queue_shares": {"vision": "0"}}, "invalid_settings", "queue_shares"),
    ({"queue_default_hours": "169"}, "invalid_settings", "queue_default_hours"),
    ({"queue_offer_seconds": 10}, "validation_error", "queue_offer_seconds"),
    ({"queue_max_gpus_per_user": 1.5}, "validation_error", "queue_max_gpus_per_user"),
    ({"queue_shares": {"vision": 2}}, "validation_error", "queue_shares/vision"),   # a weight is decimal text
])
def test_a_bad_queue_setting_is_refused_naming_its_key_and_stores_nothing(client: httpx.Client, lab: Tokens,
                                                                         body: dict[str, object], code: str,
                                                                         field: str) -> None:
    r = client.put("/v1/settings", headers=bearer(lab.admin), json={**body, "reason": "try"})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert (error["code"], error["details"]["field"]) == (code, field), error
    assert client.get("/v1/settings", headers=bearer(lab.admin)).json()["version"] is None
