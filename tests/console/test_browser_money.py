"""The money and people admin pages in Chromium: each renders for the roles that may open it with no console
error or failed request, passes axe-core (no serious or critical finding) at 1280 and 390 px, and the
recharge form, clicked twice without JavaScript, posts one entry whose balance the page shows."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import text

from api.console import i18n
from ledger.service import Ledger
from tests.api.conftest import Tokens
from tests.console.browser import NEEDS_CHROMIUM, Watch, submit, visit, watched_page

pytestmark = NEEDS_CHROMIUM



def _first_usage_entry(ledger: Ledger) -> int:
    with ledger.engine.connect() as conn:
        return int(conn.execute(text("SELECT min(id) FROM ledger.journal_entry WHERE kind = 'usage'")).scalar_one())


ADMIN_PAGES = (("/admin/users/alice", "money-user"), ("/admin/wallets/user:alice", "money-wallet"),
               ("/admin/wallets/project:lab", "money-wallet-project"), ("/admin/entries/{usage}", "money-entry"),
               ("/admin/projects", "money-projects"), ("/admin/mappings", "money-mappings"),
               ("/admin/prices", "money-prices"), ("/admin/exports", "money-exports"), ("/sessions", "money-tokens"),
               ("/admin/audit", "money-audit"))
AUDITOR_PAGES = (("/admin/wallets/user:alice", "money-wallet-auditor"), ("/admin/prices", "money-prices-auditor"),
                 ("/admin/audit?action=user.", "money-audit-auditor"), ("/admin/audit?log=api", "money-audit-api"),
                 ("/admin/audit?log=queue", "money-audit-queue"))
OPERATOR_PAGES = (("/admin/projects", "money-projects-operator"), ("/admin/mappings", "money-mappings-operator"))
DARK_PAGES = (("/admin/wallets/user:alice", "money-wallet-dark"),)
EXPORT = "/admin/exports/file?format=csv&from=2026-01-01&to=2026-02-01"


def test_money_pages_render_cleanly_and_accessibly(browser: Any, base_url: str, issued: Tokens, seeded: Ledger,
                                                    artifacts: Path) -> None:
    seeded.map_linux_user("*", "alice1", "alice", actor="test")
    usage = _first_usage_entry(seeded)
    watch, findings = Watch(), []
    for token, pages, options in ((issued.admin, ADMIN_PAGES, {}), (issued.auditor, AUDITOR_PAGES, {}),
                                  (issued.operator, OPERATOR_PAGES, {}),
                                  (issued.admin, DARK_PAGES, {"color_scheme": "dark"})):
        context, page = watched_page(browser, base_url, watch, token, **options)
        for path, name in pages:
            findings += visit(page, base_url, path.format(usage=usage), artifacts, name)
        if pages is ADMIN_PAGES:
            # The what-if result, on the price book's own page.
            page.set_viewport_size({"width": 1280, "height": 900})
            page.goto(f"{base_url}/admin/prices")
            page.fill("form[action='/admin/prices/preview'] input[name=amount]", "0.7")
            page.fill("form[action='/admin/prices/preview'] input[name=model_pattern]", "A100")
            submit(page, "form[action='/admin/prices/preview'] button[type=submit]")
            assert page.locator("#preview").count() == 1
            page.screenshot(path=str(artifacts / "money-preview-1280.png"), full_page=True)
            # A download is no page to draw: fetched in the session, as the form's link does.
            download = page.request.get(f"{base_url}{EXPORT}")
            assert download.status == 200 and download.headers["content-disposition"].startswith("attachment")
        context.close()
    assert watch.problems == []
    assert "\n".join(findings) == ""


def test_the_recharge_form_clicked_twice_posts_once(browser: Any, base_url: str, issued: Tokens,
                                                    ledger: Ledger) -> None:
    watch = Watch()
    context, page = watched_page(browser, base_url, watch, issued.admin, java_script_enabled=False)
    page.goto(f"{base_url}/admin/wallets/user:bob")
    page.fill("#recharge input[name=amount]", "7.000001")
    sent = {name: page.locator(f"#recharge input[name={name}]").input_value()
            for name in ("csrf", "idempotency_key", "amount")}
    submit(page, "#recharge button[type=submit]")
    assert urlsplit(page.url).path == "/admin/wallets/user:bob"
    # The same form's POST again, in the same session (a double submit; go_back would re-render: no-store).
    replay = page.request.post(f"{base_url}/admin/wallets/user:bob/recharge", form=sent, max_redirects=0)
    shown_at = urlsplit(page.url)
    assert (replay.status, replay.headers["location"]) == (303, f"{shown_at.path}?{shown_at.query}")
    with ledger.engine.connect() as conn:
        count = conn.execute(text("SELECT count(*) FROM ledger.journal_entry WHERE kind = 'recharge'")).scalar_one()
    balance = ledger.balance("user:bob").available
    assert (count, balance) == (1, 7_000_001)
    shown = page.locator("#balance").inner_text()
    assert shown == i18n.Formats("en", ledger.config.currency, ledger.config.timezone).money(7_000_001)
    context.close()
    assert watch.problems == []


# Every page this module opens (the coverage test in test_browser.py reads it).
VISITS = tuple(p.format(usage=1) for p, _ in ADMIN_PAGES + AUDITOR_PAGES + OPERATOR_PAGES) + (EXPORT,)
