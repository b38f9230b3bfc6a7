"""The console in a real browser (Debian's Chromium through Playwright) against the app on loopback: every
page for each role renders with no console error and no failed request, passes axe-core with no serious or
critical violation, is photographed at 1280 and 390 px, works without JavaScript for its forms, and the usage
chart's numbers are the ledger's to the micro-unit."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ledger.service import Ledger
from tests.api.conftest import Tokens
from tests.console.browser import NEEDS_CHROMIUM, Watch, log_in_browser, submit, visit, watched_page

pytestmark = NEEDS_CHROMIUM


USER_PAGES = (("/", "user-home"), ("/users/alice/usage?days=30", "user-usage"),
              ("/users/alice/statement", "user-statement"), ("/users/alice/projects", "user-projects"))
ADMIN_PAGES = (("/users", "admin-users"), ("/users/alice", "admin-user-alice"), ("/sessions", "admin-sessions"),
               ("/licenses", "licenses"))


def test_every_page_renders_cleanly_and_accessibly(browser: Any, base_url: str, issued: Tokens, seeded: Ledger,
                                                    artifacts: Path) -> None:
    watch, findings = Watch(), []
    context, page = watched_page(browser, base_url, watch)
    findings += visit(page, base_url, "/login", artifacts, "login")
    log_in_browser(page, base_url, issued.alice)
    for path, name in USER_PAGES:
        findings += visit(page, base_url, path, artifacts, name)
    context.close()
    for token, pages in ((issued.admin, ADMIN_PAGES), (issued.operator, (("/users", "operator-users"),)),
                         (issued.auditor, (("/users/alice/usage?days=7", "auditor-usage"),))):
        context, page = watched_page(browser, base_url, watch, token)
        for path, name in pages:
            findings += visit(page, base_url, path, artifacts, name)
        context.close()
    dark, page = watched_page(browser, base_url, watch, issued.alice, color_scheme="dark")
    findings += visit(page, base_url, "/users/alice/usage?days=30", artifacts, "user-usage-dark")
    dark.close()
    assert watch.problems == []
    assert "\n".join(findings) == ""


def test_the_usage_chart_holds_the_ledgers_numbers(browser: Any, base_url: str, issued: Tokens,
                                                   seeded: Ledger) -> None:
    watch = Watch()
    context, page = watched_page(browser, base_url, watch, issued.alice)
    for days in (7, 30, 90):
        page.goto(f"{base_url}/users/alice/usage?days={days}")
        page.wait_for_selector("#usage-chart .uplot canvas")   # drawn by uPlot from the page's data
        data = json.loads(page.locator("#usage-data").text_content() or "{}")
        start, end = (datetime.fromisoformat(data[k]).date() for k in ("start", "end"))
        assert len(data["days"]) == days
        assert data["currency"] == seeded.config.currency   # the y-axis label (uPlot draws it on the canvas)
        by_user = {r.key: r for r in seeded.usage_report(start, end, by="user")}
        charted = {s["key"]: sum(s["amounts"]) for s in data["series"]}
        assert sum(charted.values()) == data["total"] == sum(
            r.amount for r in seeded.usage_report(start, end, by="user") if r.key == "alice")
        by_model = {r.key: r.amount for r in seeded.usage_report(start, end, by="model") if r.unit == "gpu-second"}
        assert {k: v for k, v in charted.items() if k in ("A100", "H100")} == by_model
        cpu = [r.amount for r in seeded.usage_report(start, end, by="resource") if r.key == "cpu"]
        assert charted["cpu"] == sum(cpu) > 0
        assert by_user["alice"].amount > 0 and len(by_model) == (2 if days > 7 else len(by_model))
    # With JavaScript the period links refresh only the main part (htmx) and the chart is drawn again.
    page.evaluate("document.body.dataset.marker = 'kept'")
    page.click("nav.tabs a[href='?days=7']")
    page.wait_for_function("() => JSON.parse(document.getElementById('usage-data').textContent).days.length === 7")
    page.wait_for_selector("#usage-chart .uplot canvas")
    assert page.evaluate("document.body.dataset.marker") == "kept" and page.url.endswith("?days=7")
    csv = page.request.get(f"{base_url}/users/alice/usage?days=30&format=csv")
    assert csv.status == 200 and csv.headers["content-type"].startswith("text/csv")
    context.close()
    assert watch.problems == []


def test_forms_work_without_javascript(browser: Any, base_url: str, issued: Tokens, artifacts: Path) -> None:
    watch = Watch()
    context, page = watched_page(browser, base_url, watch, issued.admin, java_script_enabled=False)
    page.select_option("select[name=lang]", "zh_Hans")
    submit(page, "form.prefs button[type=submit]")
    assert page.locator("h1").inner_text() == "概览"   # the landing page: the machines overview
    # Readable Chinese, not tofu, needs a CJK font on the machine (scripts/test installs fonts-noto-cjk).
    page.screenshot(path=str(artifacts / "zh-overview-1280.png"), full_page=True)
    submit(page, "form[action='/logout'] button[type=submit]")
    assert urlsplit(page.url).path == "/login"
    page.goto(f"{base_url}/users")
    assert page.url.endswith("/login?next=/users")
    context.close()
    assert watch.problems == []


# Every page this module opens in the browser; each other browser module (test_browser_*.py) keeps its own.
VISITS = ("/login", *(path for path, _ in USER_PAGES + ADMIN_PAGES))


def test_every_page_of_the_route_table_is_opened_in_the_browser() -> None:
    """A page added to the route table without a browser test fails here: render, console errors, axe and the
    screenshots hold for every page, not just for those someone remembered."""
    import importlib

    from starlette.routing import compile_path

    from api.routes import OPERATIONS

    visited = [path for module in sorted(Path(__file__).parent.glob("test_browser*.py"))
               for path in importlib.import_module(f"tests.console.{module.stem}").VISITS]
    pages = [op.path for op in OPERATIONS if op.page and op.method == "GET"]
    unvisited = [p for p in pages
                 if not any(compile_path(p)[0].match(urlsplit(v).path) for v in visited)]
    assert unvisited == []
