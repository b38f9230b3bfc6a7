"""The console in a real browser (Debian's Chromium through Playwright) against the app on loopback: every
page for each role renders with no console error and no failed request, passes axe-core with no serious or
critical violation, is photographed at 1280 and 390 px, works without JavaScript for its forms, and the usage
chart's numbers are the ledger's to the micro-unit."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from api.console.render import STATIC_DIR
from ledger.records import UsageRecord, UsageTick
from ledger.service import Ledger
from tests.api.conftest import Tokens

CHROMIUM = shutil.which("chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
AXE = next(p.name for p in (STATIC_DIR / "vendor").glob("axe-core-*.min.js"))
WIDTHS = (1280, 390)

pytestmark = pytest.mark.skipif(CHROMIUM is None,
                                reason="Debian's chromium is not installed (scripts/test installs it)")
sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: $GPULEDGER_ARTIFACTS, else a folder of pytest's base temp."""
    given = os.environ.get("GPULEDGER_ARTIFACTS")
    folder = Path(given) / "console" if given else tmp_path_factory.getbasetemp() / "console-screens"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass
class Watch:
    """Everything that went wrong in the browser: console errors, failed requests, error responses, and
    any request off loopback (refused)."""

    problems: list[str] = field(default_factory=list)
    allowed_status: set[tuple[str, int]] = field(default_factory=set)

    def attach(self, page: Any) -> None:
        page.on("console", lambda m: self.problems.append(f"console {m.type}: {m.text}") if m.type == "error"
                else None)
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: self.problems.append(f"failed: {r.url} {r.failure}"))
        page.on("response", self._response)

    def _response(self, response: Any) -> None:
        path = urlsplit(response.url).path
        if response.status >= 400 and (path, response.status) not in self.allowed_status:
            self.problems.append(f"{response.status} {response.url}")


@pytest.fixture
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def _context(browser: Any, base_url: str, watch: Watch, **options: Any) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, **options)

    def gate(route: Any) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            watch.problems.append(f"off loopback: {route.request.url}")
            route.abort()

    context.route("**/*", gate)
    return context


def _submit(page: Any, selector: str) -> None:
    """Click a form's button and wait until the next page has loaded (its stylesheet included)."""
    with page.expect_navigation(wait_until="load"):
        page.click(selector)


def _log_in(page: Any, base_url: str, token: str) -> None:
    page.goto(f"{base_url}/login")
    page.fill("#token", token)
    _submit(page, "form[action='/login'] button[type=submit]")
    assert urlsplit(page.url).path != "/login", page.content()[:500]


def _axe(page: Any, base_url: str) -> list[str]:
    page.add_script_tag(url=f"{base_url}/static/vendor/{AXE}")
    found: list[str] = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".filter(v => v.impact === 'serious' || v.impact === 'critical')"
        ".map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', '))")
    return found


def _visit(page: Any, base_url: str, path: str, shots: Path, name: str) -> list[str]:
    """Open ``path`` at both widths; a screenshot of each; axe's serious findings at each."""
    findings = []
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        response = page.goto(f"{base_url}{path}")
        assert response is not None and response.status == 200, (path, response and response.status)
        page.wait_for_load_state("load")
        page.screenshot(path=str(shots / f"{name}-{width}.png"), full_page=True)
        findings += [f"{path} @{width}: {v}" for v in _axe(page, base_url)]
    return findings


T_END = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)


@pytest.fixture
def seeded(ledger: Ledger, issued: Tokens) -> Ledger:
    """alice (in project lab) used A100s, an H100 and CPU over the last ten days at prices with odd fractions;
    lab and alice were recharged."""
    start = T_END - timedelta(days=10)
    for model, amount in (("A100", "0.613"), ("H100", "1.170001")):
        ledger.add_price("gpu", Decimal(amount), Decimal(3600), model_pattern=model, actor="test",
                         valid_from=start - timedelta(days=1))
    ledger.add_price("cpu", Decimal("0.0371"), Decimal(3600), actor="test", valid_from=start - timedelta(days=1))
    ledger.add_project("lab", actor="test")
    ledger.assign_project("alice", "lab", actor="test")
    ledger.recharge("project:lab", 2_000_000_000, idem_key="seed-lab", actor="test", memo="seed")
    ledger.recharge("user:alice", 12_345_678, idem_key="seed-alice", actor="test", memo="seed")
    records = []
    t = start
    i = 0
    while t < T_END:
        end = t + timedelta(hours=5)
        for resource, model, qty, unit in (("gpu", "A100", 7 * 3600 + i, "gpu-second"),
                                           ("gpu", "H100", 1800 + 3 * i, "gpu-second"),
                                           ("cpu", "", 9000 + i, "core-second")):
            if model == "H100" and i % 3:
                continue
            records.append(UsageRecord(f"n1/{i}/{resource}/{model}", "alice", resource, Decimal(qty), unit, t, end,
                                       "test", f"n1/e/{resource}/{model}", model, {}))
        t, i = end, i + 1
    result = ledger.post_usage(UsageTick("n1", tuple(records)))
    assert (result.rejected, result.skipped, len(result.posted)) == ((), (), len(records))
    return ledger


USER_PAGES = (("/", "user-home"), ("/users/alice/usage?days=30", "user-usage"),
              ("/users/alice/statement", "user-statement"), ("/users/alice/projects", "user-projects"))
ADMIN_PAGES = (("/users", "admin-users"), ("/users/alice", "admin-user-alice"), ("/sessions", "admin-sessions"),
               ("/licenses", "licenses"))


def test_every_page_renders_cleanly_and_accessibly(browser: Any, base_url: str, issued: Tokens, seeded: Ledger,
                                                    artifacts: Path) -> None:
    watch, findings = Watch(), []
    context = _context(browser, base_url, watch)
    page = context.new_page()
    watch.attach(page)
    findings += _visit(page, base_url, "/login", artifacts, "login")
    _log_in(page, base_url, issued.alice)
    for path, name in USER_PAGES:
        findings += _visit(page, base_url, path, artifacts, name)
    context.close()
    for token, pages in ((issued.admin, ADMIN_PAGES), (issued.operator, (("/users", "operator-users"),)),
                         (issued.auditor, (("/users/alice/usage?days=7", "auditor-usage"),))):
        context = _context(browser, base_url, watch)
        page = context.new_page()
        watch.attach(page)
        _log_in(page, base_url, token)
        for path, name in pages:
            findings += _visit(page, base_url, path, artifacts, name)
        context.close()
    dark = _context(browser, base_url, watch, color_scheme="dark")
    page = dark.new_page()
    watch.attach(page)
    _log_in(page, base_url, issued.alice)
    findings += _visit(page, base_url, "/users/alice/usage?days=30", artifacts, "user-usage-dark")
    dark.close()
    assert watch.problems == []
    assert "\n".join(findings) == ""


def test_the_usage_chart_holds_the_ledgers_numbers(browser: Any, base_url: str, issued: Tokens,
                                                   seeded: Ledger) -> None:
    watch = Watch()
    context = _context(browser, base_url, watch)
    page = context.new_page()
    watch.attach(page)
    _log_in(page, base_url, issued.alice)
    for days in (7, 30, 90):
        page.goto(f"{base_url}/users/alice/usage?days={days}")
        page.wait_for_selector("#usage-chart .uplot canvas")   # drawn by uPlot from the page's data
        data = json.loads(page.locator("#usage-data").text_content() or "{}")
        start, end = (datetime.fromisoformat(data[k]).date() for k in ("start", "end"))
        assert len(data["days"]) == days
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


def test_forms_work_without_javascript(browser: Any, base_url: str, issued: Tokens) -> None:
    watch = Watch()
    context = _context(browser, base_url, watch, java_script_enabled=False)
    page = context.new_page()
    watch.attach(page)
    _log_in(page, base_url, issued.admin)
    page.select_option("select[name=lang]", "zh_Hans")
    _submit(page, "form.prefs button[type=submit]")
    assert page.locator("h1").inner_text() == "用户"
    _submit(page, "form[action='/logout'] button[type=submit]")
    assert urlsplit(page.url).path == "/login"
    page.goto(f"{base_url}/users")
    assert page.url.endswith("/login?next=/users")
    context.close()
    assert watch.problems == []
