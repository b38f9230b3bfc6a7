"""The GPU queue's pages in Chromium: a user's requests, the admins' queue, one request with its history and the
idle-held report, for each role that may open them (light and dark, English and Chinese), with no console error
or failed request, axe clean at 1280 and 390 px, screenshots; the user's form files one request when sent twice
without JavaScript, and an operator's boost form records its reason."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import text

from api.handlers.queue import catalog
from control.queue import admin
from control.queue.records import Policy
from ledger.service import Ledger
from tests.api.conftest import ApiDatabase, Tokens
from tests.api.queue_lab import A0, run_tick, seed
from tests.console.browser import NEEDS_CHROMIUM, Watch, submit, visit, watched_page

pytestmark = NEEDS_CHROMIUM


def _file(ledger: Ledger, user: str, models: list[str]) -> int:
    with ledger.engine.begin() as conn:
        made, _ = admin.request(conn, user=user, project=None, body={"models": models}, catalog=catalog(conn),
                                policy=Policy(), now=datetime.now(UTC))
    return made.id


@pytest.fixture
def queue(api_db: ApiDatabase, issued: Tokens, ledger: Ledger) -> int:
    """alice holds a grant of an A100 and waits for the H100 bob was offered; bob waits for an A100 too. Returns
    alice's granted request."""
    seed(api_db.admin_url)
    granted = _file(ledger, "alice", ["A100"])
    run_tick(ledger)
    run_tick(ledger, busy={A0: "alice"})
    _file(ledger, "bob", ["H100"])
    run_tick(ledger, busy={A0: "alice"})
    _file(ledger, "alice", ["H100"])
    _file(ledger, "bob", ["A100"])
    run_tick(ledger, busy={A0: "alice"})
    return granted


USER_PAGES = (("/users/alice/gpu-requests", "queue-mine"),)
ADMIN_PAGES = (("/admin/gpu-queue", "queue-admin"), ("/admin/gpu-queue/{granted}", "queue-request"),
               ("/admin/idle-gpu-hours", "queue-idle"))
AUDITOR_PAGES = (("/admin/gpu-queue", "queue-admin-auditor"), ("/users/alice/gpu-requests", "queue-mine-auditor"),
                 ("/admin/idle-gpu-hours", "queue-idle-auditor"))


def test_queue_pages_render_cleanly_and_accessibly(browser: Any, base_url: str, issued: Tokens, queue: int,
                                                    artifacts: Path) -> None:
    watch, findings = Watch(), []
    for token, pages, prefix, options in (
            (issued.alice, USER_PAGES, "", {}), (issued.alice, USER_PAGES, "dark-", {"color_scheme": "dark"}),
            (issued.alice, USER_PAGES, "zh-", {"locale": "zh-CN", "extra_http_headers": {"Accept-Language": "zh-CN"}}),
            (issued.admin, ADMIN_PAGES, "", {}), (issued.operator, ADMIN_PAGES, "dark-", {"color_scheme": "dark"}),
            (issued.auditor, AUDITOR_PAGES, "", {})):
        context, page = watched_page(browser, base_url, watch, token, **options)
        for path, name in pages:
            findings += visit(page, base_url, path.format(granted=queue), artifacts, prefix + name)
        context.close()
    assert watch.problems == []
    assert "\n".join(findings) == ""


def test_the_request_form_sent_twice_without_javascript_files_one(browser: Any, base_url: str, issued: Tokens,
                                                                  queue: int, ledger: Ledger) -> None:
    watch = Watch()
    context, page = watched_page(browser, base_url, watch, issued.bob, java_script_enabled=False)
    page.goto(f"{base_url}/users/bob/gpu-requests")
    page.check("#file-request input[name='model:H100']")
    page.fill("#file-request input[name=hours]", "1.25")
    form = page.locator("#file-request")
    sent = {name: form.locator(f"input[name={name}]").input_value() for name in ("csrf", "idempotency_key", "hours")}
    submit(page, "#file-request button[type=submit]")
    assert urlsplit(page.url).path == "/users/bob/gpu-requests"
    replay = page.request.post(f"{base_url}/me/gpu-requests", form={**sent, "model:H100": "on", "count": "1"},
                               max_redirects=0)
    assert (replay.status, replay.headers["location"]) == (303, "/users/bob/gpu-requests")
    with ledger.engine.connect() as conn:
        filed = conn.execute(text("SELECT count(*) FROM control.queue_request WHERE billing_user = 'bob'"
                                  " AND hours = 1.25")).scalar_one()
    assert filed == 1
    assert page.locator("#live-requests tbody tr").count() == 3   # the offer, the A100 wait, the new one
    context.close()

    context, page = watched_page(browser, base_url, watch, issued.operator, java_script_enabled=False)
    page.goto(f"{base_url}/admin/gpu-queue/{queue + 1}")
    page.fill(f"#boost-{queue + 1} input[name=boost_hours]", "5")
    page.fill(f"#boost-{queue + 1} input[name=reason]", "demo tomorrow")
    submit(page, f"#boost-{queue + 1} button[type=submit]")
    assert page.locator("#request-boost").inner_text() == "5"
    assert "demo tomorrow" in page.locator("#queue-actions").inner_text()
    context.close()
    assert watch.problems == []


# Every page this module opens (the coverage test in test_browser.py reads it).
VISITS = tuple(p.format(granted=1) for p, _ in USER_PAGES + ADMIN_PAGES + AUDITOR_PAGES)
