"""What the console's browser tests share: Debian's Chromium driven by Playwright, a watch that fails a test
on any console error, failed request or request off loopback, login through the form, axe-core's serious and
critical findings, and a visit that photographs a page at 1280 and 390 px. The fixtures (``browser``,
``artifacts``, ``seeded``) are in conftest.py."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from api.console.render import STATIC_DIR

CHROMIUM = shutil.which("chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
AXE = next(p.name for p in (STATIC_DIR / "vendor").glob("axe-core-*.min.js"))
WIDTHS = (1280, 390)

# Each browser test module sets ``pytestmark = NEEDS_CHROMIUM``.
NEEDS_CHROMIUM = pytest.mark.skipif(CHROMIUM is None,
                                    reason="Debian's chromium is not installed (scripts/test installs it)")


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


def context_of(browser: Any, base_url: str, watch: Watch, **options: Any) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, **options)

    def gate(route: Any) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            watch.problems.append(f"off loopback: {route.request.url}")
            route.abort()

    context.route("**/*", gate)
    return context


def watched_page(browser: Any, base_url: str, watch: Watch, token: str | None = None,
                 **options: Any) -> tuple[Any, Any]:
    """A new context (``options``: viewport aside, as ``context_of``) and its page under ``watch``, logged in
    through the form with ``token`` when one is given."""
    context = context_of(browser, base_url, watch, **options)
    page = context.new_page()
    watch.attach(page)
    if token is not None:
        log_in_browser(page, base_url, token)
    return context, page


def submit(page: Any, selector: str) -> None:
    """Click a form's button and wait until the next page has loaded (its stylesheet included)."""
    with page.expect_navigation(wait_until="load"):
        page.click(selector)


def log_in_browser(page: Any, base_url: str, token: str) -> None:
    page.goto(f"{base_url}/login")
    page.fill("#token", token)
    submit(page, "form[action='/login'] button[type=submit]")
    assert urlsplit(page.url).path != "/login", page.content()[:500]


def axe_findings(page: Any, base_url: str) -> list[str]:
    page.add_script_tag(url=f"{base_url}/static/vendor/{AXE}")
    found: list[str] = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".filter(v => v.impact === 'serious' || v.impact === 'critical')"
        ".map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', '))")
    return found


def visit(page: Any, base_url: str, path: str, shots: Path, name: str) -> list[str]:
    """Open ``path`` at both widths; a screenshot of each; axe's serious findings at each."""
    findings = []
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        response = page.goto(f"{base_url}{path}")
        assert response is not None and response.status == 200, (path, response and response.status)
        page.wait_for_load_state("load")
        page.screenshot(path=str(shots / f"{name}-{width}.png"), full_page=True)
        findings += [f"{path} @{width}: {v}" for v in axe_findings(page, base_url)]
    return findings
