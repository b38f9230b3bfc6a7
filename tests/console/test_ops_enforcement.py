"""The enforcement and settings pages over HTTP: decisions filtered and paged as the API pages them, an override
from the form (its local end time kept as the instant meant), a settings version from the form with its reason,
and who may post each."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx

from ledger.service import Ledger
from tests.api.conftest import ApiDatabase, Tokens, bearer
from tests.api.test_decisions import _decide
from tests.console.conftest import csrf_of, log_in
from tests.console.test_ops import _rows


def test_decisions_filter_and_page(base_url: str, issued: Tokens, api_db: ApiDatabase) -> None:
    for user, verb in (("alice", "gpu-block 1001"), ("bob", "gpu-block 1002"), ("alice", "quota-clear 1001")):
        _decide(api_db, user, verb)
    with log_in(base_url, issued.auditor) as c:
        assert [r[5] for r in _rows(c.get("/enforcement").text, "decisions")] == [
            "gpu-block 1001", "gpu-block 1002", "quota-clear 1001"]
        first = c.get("/enforcement?billing_user=alice&limit=1").text
        assert [r[3] for r in _rows(first, "decisions")] == ["alice"]
        link = re.search(r'href="([^"]+)" id="more"', first)
        assert link is not None
        more = link.group(1).replace("&amp;", "&")
        assert "billing_user=alice" in more and "cursor=" in more
        second = c.get(more).text
        assert [r[5] for r in _rows(second, "decisions")] == ["quota-clear 1001"]
        assert _rows(c.get("/enforcement?node=gpu02").text, "decisions") == [["No decision matches."]]
        assert 'id="override-form"' not in first   # an auditor reads only


def test_override_form_takes_the_api_path_with_a_local_end(base_url: str, client: httpx.Client, issued: Tokens,
                                                           ledger: Ledger) -> None:
    end = (datetime.now(ledger.config.timezone) + timedelta(days=2)).replace(second=0, microsecond=0, tzinfo=None)
    with log_in(base_url, issued.operator) as c:
        token = csrf_of(c.get("/enforcement").text)
        form = {"user": "alice", "action": "exempt", "reason": "paper deadline", "until": end.isoformat()[:16]}
        assert c.post("/enforcement/overrides", data=form).status_code == 403           # no CSRF field
        done = c.post("/enforcement/overrides", data={**form, "csrf": token})
        assert (done.status_code, done.headers["location"]) == (303, "/enforcement")
        assert c.post("/enforcement/overrides", data={**form, "user": "nobody", "csrf": token}).status_code == 404
        assert c.post("/enforcement/overrides", data={**form, "reason": "", "csrf": token}).status_code == 422
        assert "paper deadline" in c.get("/enforcement").text
    (made,) = client.get("/v1/enforcement/overrides", headers=bearer(issued.auditor)).json()
    assert datetime.fromisoformat(made["until"]) == end.replace(tzinfo=ledger.config.timezone)
    assert (made["user"], made["action"], made["actor"]) == ("alice", "exempt", "api:operator-x")
    assert datetime.fromisoformat(made["until"]) > datetime.now(UTC)


def test_settings_form_is_put_settings_for_admins_only(base_url: str, client: httpx.Client,
                                                       issued: Tokens) -> None:
    with log_in(base_url, issued.admin) as c:
        token = csrf_of(c.get("/settings").text)
        done = c.post("/settings", data={"csrf": token, "kill_grace_seconds": "90", "dry_run": "true",
                                         "tier_warning": "", "queue_max_gpus_per_user": "2",
                                         "queue_default_hours": "2.5", "queue_offer_seconds": "",
                                         "reason": "gentler kills"})
        assert done.status_code == 303, done.text[:400]
        assert c.post("/settings", data={"csrf": token, "kill_grace_seconds": "1.5", "reason": "x"}).status_code == 422
        assert c.post("/settings", data={"csrf": token, "queue_max_queued_per_user": "two",
                                         "reason": "x"}).status_code == 422
        assert c.post("/settings", data={"csrf": token, "queue_max_hours": "1", "reason": "x"}).status_code == 422
        assert c.post("/settings", data={"csrf": token, "tier_warning": "-1", "reason": "x"}).status_code == 422
        rows = _rows(c.get("/settings").text, "versions")
    assert [(r[0], r[3]) for r in rows] == [("1", "gentler kills")]
    assert "kill_grace_seconds=90" in rows[0][4] and "dry_run=True" in rows[0][4]
    assert "queue_max_gpus_per_user=2" in rows[0][4] and "queue_default_hours=2.50" in rows[0][4]
    current = client.get("/v1/settings", headers=bearer(issued.admin)).json()
    assert (current["version"], current["settings"]["kill_grace_seconds"], current["settings"]["dry_run"]) == (
        1, 90, True)
    assert "queue_offer_seconds" not in current["settings"]     # an empty field keeps what is in force
    with log_in(base_url, issued.operator) as c:
        page = c.get("/settings").text
        assert 'id="settings-form"' not in page
        assert c.post("/settings", data={"csrf": csrf_of(page), "reason": "x"}).status_code == 403
