"""/docs: Swagger UI served by the app itself, public, under a strict Content-Security-Policy; a real browser
(Debian's chromium driven by Playwright) shows the operations and sends no request off loopback."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from api.docs import CSP

CHROMIUM = shutil.which("chromium")
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync"]


def test_docs_page_is_public_self_hosted_and_locked_down(client: httpx.Client) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == CSP
    assert "script-src 'self';" in CSP and "unsafe-eval" not in CSP
    assert "http" not in page.text and "<script>" not in page.text   # nothing from elsewhere, no inline script
    for path, kind in (("/docs/swagger-ui-bundle.js", "text/javascript"), ("/docs/swagger-ui.css", "text/css"),
                       ("/docs/init.js", "text/javascript")):
        asset = client.get(path)
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(kind), path
        assert asset.headers["x-content-type-options"] == "nosniff"
    assert "validatorUrl: null" in client.get("/docs/init.js").text
    assert client.get("/docs/swagger-editor-bundle.js").status_code == 404   # only what the page loads


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (scripts/test installs it)")
def test_a_browser_lists_the_operations_without_leaving_loopback(base_url: str, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    requested: list[str] = []
    violations: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS)
        try:
            page = browser.new_page()

            def gate(route: sync_api.Route) -> None:
                requested.append(route.request.url)
                if urlsplit(route.request.url).hostname == "127.0.0.1":
                    route.continue_()
                else:
                    route.abort()

            page.route("**/*", gate)
            page.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text
                    else None)
            page.goto(f"{base_url}/docs")
            page.wait_for_selector(".opblock-summary", timeout=30_000)
            summaries = page.locator(".opblock-summary-description").all_inner_texts()
            tags = page.locator(".opblock-tag").all_inner_texts()
            page.screenshot(path=str(tmp_path / "docs.png"))   # for a person to look at (pytest's base temp)
        finally:
            browser.close()
    assert "Add money to a wallet" in summaries and "Revoke a token" in summaries
    assert any(t.startswith("money") for t in tags) and any(t.startswith("cluster") for t in tags)
    off_loopback = [u for u in requested if urlsplit(u).hostname != "127.0.0.1"]
    assert off_loopback == [] and f"{base_url}/openapi.json" in requested
    assert violations == []
