"""The machines pages in Chromium: overview, registry, node detail and a connection test for an admin and an
operator (light and dark), with no console error or failed request, axe clean, screenshots at 1280 and 390 px;
the node forms work without JavaScript, and the test's page follows the controller's answer with htmx."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from control import connections
from ledger.service import Ledger
from tests.api.conftest import Tokens
from tests.console.browser import NEEDS_CHROMIUM, Watch, submit, visit, watched_page
from tests.console.test_ops import Machines, machines  # noqa: F401 (the fixture)

pytestmark = NEEDS_CHROMIUM

USER_PAGES = (("/users/alice/gpus", "ops-my-gpus"),)
PAGES = (("/", "ops-overview"), ("/?bucket=hour", "ops-overview-hour"), ("/nodes", "ops-nodes"),
         ("/nodes?status=failed&sort=last_seen_at", "ops-nodes-failed"), ("/nodes/gpu01", "ops-node"),
         ("/enforcement", "ops-enforcement"), ("/settings", "ops-settings"))
VISITS = (*(path for path, _ in PAGES + USER_PAGES), "/connection-tests/1")


def test_machines_pages_render_cleanly_and_accessibly(browser: Any, base_url: str, issued: Tokens,
                                                      seeded: Ledger, machines: Machines,  # noqa: F811
                                                      artifacts: Path) -> None:
    watch, findings = Watch(), []
    for token, scheme, prefix in ((issued.admin, "light", ""), (issued.operator, "dark", "dark-")):
        context, page = watched_page(browser, base_url, watch, token, color_scheme=scheme)
        for path, name in PAGES:
            findings += visit(page, base_url, path, artifacts, prefix + name)
        context.close()
    context, page = watched_page(browser, base_url, watch, issued.alice)
    for path, name in USER_PAGES:
        findings += visit(page, base_url, path, artifacts, name)
    context.close()
    assert watch.problems == []
    assert "\n".join(findings) == ""


def test_overview_draws_its_charts_from_the_pages_data(browser: Any, base_url: str, issued: Tokens, seeded: Ledger,
                                                       machines: Machines, artifacts: Path) -> None:  # noqa: F811
    """uPlot draws the states and charged-per-day charts (a static script reading #overview-data: no inline
    script under the CSP); the y-axes carry their units; the tables stay beside them."""
    watch = Watch()
    context, page = watched_page(browser, base_url, watch, issued.admin)
    page.goto(f"{base_url}/?bucket=hour")
    page.wait_for_selector("#states-chart .uplot canvas")
    page.wait_for_selector("#charged-chart .uplot canvas")
    data = json.loads(page.locator("#overview-data").text_content() or "{}")
    assert data["currency"] == seeded.config.currency   # the charged chart's y-axis label (uPlot draws it)
    assert data["states"]["buckets"] == sorted(data["states"]["buckets"])   # oldest first, like the table
    assert data["charged"]["days"] == sorted(data["charged"]["days"])
    assert page.locator("#gpu-states tbody tr").count() == 24 and page.locator("#charged-per-day tbody tr").count() > 0
    page.screenshot(path=str(artifacts / "ops-overview-charts-1280.png"), full_page=True)
    context.close()
    assert watch.problems == []


def _first_point(page: Any, chart: str) -> str:
    """The chart legend's x value with the cursor on the chart's first point (uPlot snaps to the nearest)."""
    over = page.locator(f"{chart} .u-over")
    over.scroll_into_view_if_needed()
    box = over.bounding_box()
    page.mouse.move(box["x"] + 1, box["y"] + box["height"] / 2)
    return page.locator(f"{chart} .u-legend .u-series").first.locator(".u-value").text_content() or ""


def test_the_charts_show_the_labs_time_zone_not_the_browsers(browser: Any, base_url: str, issued: Tokens,
                                                             seeded: Ledger, machines: Machines) -> None:  # noqa: F811
    """A browser in Los Angeles reads the hour buckets in the ledger's zone (as the table beside them) and each
    day as its own date (16 hours west of Shanghai, it showed the bucket's hour there and the day before)."""
    watch = Watch()
    context, page = watched_page(browser, base_url, watch, issued.admin, timezone_id="America/Los_Angeles")
    page.goto(f"{base_url}/?bucket=hour")
    page.wait_for_selector("#states-chart .uplot canvas")
    data = json.loads(page.locator("#overview-data").text_content() or "{}")
    assert data["timezone"] == seeded.config.timezone.key
    first = datetime.fromisoformat(data["states"]["buckets"][0]).astimezone(seeded.config.timezone)
    hour = f"{first.hour % 12 or 12}:{first:%M}{'am' if first.hour < 12 else 'pm'}"
    assert _first_point(page, "#states-chart") == f"{first:%Y-%m-%d} {hour}"
    assert _first_point(page, "#charged-chart") == f"{data['charged']['days'][0]} 12:00am"
    context.close()
    assert watch.problems == []


def test_node_forms_without_javascript_and_the_test_page_follows_the_controller(
        browser: Any, base_url: str, issued: Tokens, ledger: Ledger, machines: Machines,  # noqa: F811
        artifacts: Path) -> None:
    watch = Watch()
    plain, page = watched_page(browser, base_url, watch, issued.operator, java_script_enabled=False)
    page.goto(f"{base_url}/nodes/gpu02")
    page.fill("#edit-form input[name=region]", "north")
    submit(page, "#edit-form button[type=submit]")
    assert urlsplit(page.url).path == "/nodes/gpu02"
    assert page.input_value("#edit-form input[name=region]") == "north"
    submit(page, "#test-form button[type=submit]")
    test_path = urlsplit(page.url).path
    assert test_path.startswith("/connection-tests/")
    assert page.text_content("#test-status") == "waiting for the controller"
    plain.close()

    scripted, page = watched_page(browser, base_url, watch, issued.operator)
    findings = visit(page, base_url, test_path, artifacts, "ops-connection-test")
    with ledger.engine.begin() as conn:
        test_id = int(test_path.rsplit("/", 1)[1])
        assert connections.claim(conn, 60, 10) == [(test_id, "gpu02")]
        connections.finish(conn, test_id, "failed", {"error": "connection refused"})
    # No reload: htmx's poll swaps the result in.
    page.wait_for_selector("#test-outcome", timeout=30_000)
    assert page.text_content("#test-outcome") == "failed"
    scripted.close()
    assert watch.problems == []
    assert findings == []
