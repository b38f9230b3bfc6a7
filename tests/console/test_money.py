"""The money and people admin pages over HTTP: each form posts what its API operation posts (a double submit
once), the numbers on the pages are the ledger's, and the role table decides who may see and send what."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import httpx
from sqlalchemy import text

from api.console import i18n
from ledger.service import Ledger
from tests.api.conftest import Tokens, bearer
from tests.console.conftest import T_END, csrf_of, log_in

KEY = re.compile(r'name="idempotency_key" value="([^"]+)"')


def _fmt(ledger: Ledger) -> i18n.Formats:
    return i18n.Formats("en", ledger.config.currency, ledger.config.timezone)


def _entries(ledger: Ledger, kind: str) -> list[tuple[int, str]]:
    with ledger.engine.connect() as conn:
        return [(r[0], r[1]) for r in conn.execute(
            text("SELECT id, idem_key FROM ledger.journal_entry WHERE kind = :k ORDER BY id"), {"k": kind})]


def _form(c: httpx.Client, path: str, action: str) -> dict[str, str]:
    """The hidden fields (CSRF, idempotency key) of the form posting to ``action`` on page ``path``."""
    page = c.get(path)
    assert page.status_code == 200, page.text[:300]
    form = page.text[page.text.index(f'action="{action}"'):]
    form = form[:form.index("</form>")]
    found = KEY.search(form)
    return {"csrf": csrf_of(form), **({"idempotency_key": found.group(1)} if found else {})}


def test_a_recharge_submitted_twice_posts_once_and_the_balance_shows_it_exactly(
        base_url: str, issued: Tokens, ledger: Ledger) -> None:
    before = ledger.balance("user:alice").available
    with log_in(base_url, issued.admin) as c:
        hidden = _form(c, "/admin/wallets/user:alice", "/admin/wallets/user:alice/recharge")
        data = {**hidden, "amount": "12.345678", "memo": "invoice 7"}
        first = c.post("/admin/wallets/user:alice/recharge", data=data)
        again = c.post("/admin/wallets/user:alice/recharge", data=data)   # the same form, sent again
        assert first.status_code == again.status_code == 303
        assert first.headers["location"] == again.headers["location"]
        recharges = _entries(ledger, "recharge")
        assert recharges == [(recharges[0][0], f"api:{hidden['idempotency_key']}")]
        assert first.headers["location"] == f"/admin/wallets/user:alice?posted={recharges[0][0]}"
        after = ledger.balance("user:alice").available
        assert after - before == 12_345_678
        shown = c.get(first.headers["location"]).text
        assert f'id="balance">{_fmt(ledger).money(after)}<' in shown
        assert _fmt(ledger).money(12_345_678) in shown and "invoice 7" in shown
        entry = ledger.entry(recharges[0][0])
        assert entry.actor == "api:admin-x"   # the session's token, as the API would audit it


def test_money_forms_refuse_without_csrf_or_key_and_post_nothing(base_url: str, issued: Tokens,
                                                                 ledger: Ledger) -> None:
    with log_in(base_url, issued.admin) as c:
        hidden = _form(c, "/admin/wallets/user:alice", "/admin/wallets/user:alice/recharge")
        no_csrf = c.post("/admin/wallets/user:alice/recharge",
                         data={"idempotency_key": hidden["idempotency_key"], "amount": "1"})
        no_key = c.post("/admin/wallets/user:alice/recharge", data={"csrf": hidden["csrf"], "amount": "1"})
        bad_amount = c.post("/admin/wallets/user:alice/recharge", data={**hidden, "amount": "1.2345678"})
    assert (no_csrf.status_code, no_key.status_code, bad_amount.status_code) == (403, 400, 422)
    assert "idempotency" in no_key.text and "amount" in bad_amount.text
    assert _entries(ledger, "recharge") == []


def test_grant_adjust_refund_reverse_through_the_forms(base_url: str, issued: Tokens, ledger: Ledger) -> None:
    with log_in(base_url, issued.admin) as c:
        wallet = "/admin/wallets/user:bob"
        grant = c.post(f"{wallet}/grant", data={**_form(c, wallet, f"{wallet}/grant"), "amount": "5",
                                                "expires_on": "2099-01-01"})
        adjust = c.post(f"{wallet}/adjust", data={**_form(c, wallet, f"{wallet}/adjust"), "amount": "-0.000001",
                                                  "reason": "rounding", "writeoff": "on"})
        assert grant.status_code == adjust.status_code == 303
        (adjusted, _), = _entries(ledger, "adjustment")
        assert any("writeoff" in p.account for p in ledger.entry(adjusted).postings)
        (granted, _), = _entries(ledger, "grant")
        entry_page = f"/admin/entries/{granted}"
        hidden = _form(c, entry_page, f"{entry_page}/reverse")
        first = c.post(f"{entry_page}/reverse", data={**hidden, "reason": "granted in error"})
        again = c.post(f"{entry_page}/reverse", data={**hidden, "reason": "granted in error"})
        assert first.status_code == again.status_code == 303 and first.headers["location"] == again.headers["location"]
        assert len(_entries(ledger, "reversal")) == 1
        assert f'action="{entry_page}/refund"' not in c.get(entry_page).text   # refunds are of usage only
    assert ledger.balance("user:bob").available == -1


def test_user_settings_form_is_the_api_patch(base_url: str, issued: Tokens, ledger: Ledger) -> None:
    ledger.add_project("lab", actor="test")
    with log_in(base_url, issued.admin) as c:
        hidden = _form(c, "/admin/users/bob", "/admin/users/bob")
        r = c.post("/admin/users/bob", data={**hidden, "exempt": "on", "credit_limit": "3.5", "project": "lab"})
        assert (r.status_code, r.headers["location"]) == (303, "/admin/users/bob")
        bob = ledger.get_user("bob")
        assert (bob.exempt, bob.credit_limit, bob.project) == (True, 3_500_000, "lab")
        assert 'value="3.500000"' in c.get("/admin/users/bob").text
        r = c.post("/admin/users/bob", data={**hidden, "credit_limit": "", "project": ""})
        bob = ledger.get_user("bob")
        assert (bob.exempt, bob.credit_limit, bob.project) == (False, None, None)
        made = c.post("/admin/users", data={**hidden, "name": "carol"})
        assert made.headers["location"] == "/admin/users/carol" and ledger.get_user("carol").name == "carol"
        assert c.post("/admin/projects", data={**hidden, "name": "vision"}).status_code == 303
        mapped = c.post("/admin/mappings", data={**hidden, "node": "*", "linux_user": "carol1", "user": "carol"})
        assert mapped.status_code == 303
        assert "carol1" in c.get("/admin/mappings").text and "vision" in c.get("/admin/projects").text
        assert "carol1 on *" in c.get("/admin/users/carol").text


def test_roles_see_what_the_route_table_allows(base_url: str, issued: Tokens, ledger: Ledger) -> None:
    with log_in(base_url, issued.auditor) as c:
        page = c.get("/admin/wallets/user:alice")
        assert page.status_code == 200 and "/recharge" not in page.text   # reads, no money forms
        r = c.post("/admin/wallets/user:alice/recharge",
                   data={"csrf": csrf_of(page.text), "idempotency_key": "console-x", "amount": "1"})
        assert r.status_code == 403
        assert c.get("/sessions").status_code == 403
    with log_in(base_url, issued.operator) as c:
        assert c.get("/admin/wallets/user:alice").status_code == 403
        assert c.get("/admin/exports").status_code == 403
        assert c.get("/admin/prices").status_code == 200
    with log_in(base_url, issued.alice) as c:
        assert c.get("/admin/users/alice").status_code == 403
    assert _entries(ledger, "recharge") == []


def test_a_token_secret_is_shown_once(base_url: str, issued: Tokens, client: httpx.Client) -> None:
    with log_in(base_url, issued.admin) as c:
        hidden = _form(c, "/sessions", "/tokens")
        r = c.post("/tokens", data={**hidden, "name": "ci", "role": "auditor"})
        assert r.status_code == 200
        secret = re.search(r'value="(glt_[^"]+)"', r.text)
        assert secret is not None
        assert client.get("/v1/me", headers=bearer(secret.group(1))).json()["role"] == "auditor"
        listing = c.get("/sessions").text
        assert "ci" in listing and secret.group(1) not in listing
        token_id = client.get("/v1/me", headers=bearer(secret.group(1))).json()["token_id"]
        assert c.post(f"/tokens/{token_id}/revoke", data=hidden).status_code == 303
        assert client.get("/v1/me", headers=bearer(secret.group(1))).status_code == 401


def test_the_price_preview_and_the_export_are_the_apis(base_url: str, issued: Tokens, seeded: Ledger,
                                                       client: httpx.Client) -> None:
    start, end = (T_END.date() - timedelta(days=12)).isoformat(), T_END.date().isoformat()
    proposal = {"resource": "gpu", "amount": "0.7", "per": "3600", "model_pattern": "A100", "match": "exact"}
    api = client.post("/v1/prices/preview", params={"from": start, "to": end}, json=proposal,
                      headers=bearer(issued.auditor)).json()["rows"]
    exported = client.get("/v1/exports/beancount", params={"from": start, "to": end}, headers=bearer(issued.auditor))
    with log_in(base_url, issued.auditor) as c:
        hidden = _form(c, "/admin/prices", "/admin/prices/preview")
        page = c.post("/admin/prices/preview", data={**hidden, **proposal, "from": start, "to": end})
        assert page.status_code == 200
        fmt = _fmt(seeded)
        (row,) = api
        for field in ("charged", "would_charge"):
            assert fmt.money(int(Decimal(row[field]) * 1_000_000)) in page.text
        download = c.get("/admin/exports/file", params={"format": "beancount", "from": start, "to": end})
        assert download.status_code == 200 and download.content == exported.content
        assert "attachment" in download.headers["content-disposition"]


def test_the_audit_log_filters_and_pages(base_url: str, issued: Tokens, ledger: Ledger) -> None:
    from api.console.pages.audit import PAGE_ROWS
    for i in range(PAGE_ROWS):
        ledger.add_user(f"u{i:02d}", actor="test")
    ledger.set_exempt("bob", True, actor="api:someone")
    with log_in(base_url, issued.auditor) as c:
        first = c.get("/admin/audit")
        assert first.status_code == 200
        rows = first.text.count("<tr><td>")
        assert rows == PAGE_ROWS and "api:someone" in first.text   # newest first
        older = re.search(r'href="(/admin/audit\?before=\d+&amp;log=ledger)"', first.text)
        assert older is not None
        rest = c.get(older.group(1).replace("&amp;", "&")).text
        assert "api:someone" not in rest and rest.count("<tr><td>") >= 1
        only = c.get("/admin/audit", params={"actor": "api:someone"}).text
        assert only.count("<tr><td>") == 1 and "user:bob" in only
        none = c.get("/admin/audit", params={"target": "nothing-like-this"}).text
        assert none.count("<tr><td>") == 0 and "Nothing recorded." in none
    with log_in(base_url, issued.operator) as c:
        assert c.get("/admin/audit").status_code == 403


def test_the_audit_page_shows_the_apis_own_log_through_its_reader(base_url: str, issued: Tokens,
                                                                   ledger: Ledger) -> None:
    """api.audit's rows (tokens, settings, nodes) are the page's second log, with the same filters and paging."""
    from api import audit
    from api.console.pages.audit import PAGE_ROWS
    with ledger.engine.begin() as conn:
        for i in range(PAGE_ROWS):
            audit.record(conn, actor="api:tok-admin", action="token.issue", target=f"token:t{i:02d}", before=None,
                         after={"role": "operator"}, request_id=f"r{i}")
        audit.record(conn, actor="api:other", action="settings.put", target="settings", before=None,
                     after={"dry_run": True}, request_id="rs")
    with log_in(base_url, issued.auditor) as c:
        ledger_log = c.get("/admin/audit").text
        assert "token:t00" not in ledger_log and "settings.put" not in ledger_log
        first = c.get("/admin/audit", params={"log": "api"})
        assert first.status_code == 200 and first.text.count("<tr><td>") == PAGE_ROWS
        assert "settings.put" in first.text and "token:t00" not in first.text   # newest first
        older = re.search(r'href="(/admin/audit\?before=\d+&amp;log=api)"', first.text)
        assert older is not None
        rest = c.get(older.group(1).replace("&amp;", "&")).text
        assert rest.count("<tr><td>") == 1 and "token:t00" in rest
        only = c.get("/admin/audit", params={"log": "api", "action": "settings."}).text
        assert only.count("<tr><td>") == 1 and "api:other" in only
        assert c.get("/admin/audit", params={"log": "nope"}).status_code == 422


def test_a_usage_charge_is_refunded_once_through_its_entry_page(base_url: str, issued: Tokens,
                                                               seeded: Ledger) -> None:
    with seeded.engine.connect() as conn:
        usage = conn.execute(text("SELECT min(id) FROM ledger.journal_entry WHERE kind = 'usage'")).scalar_one()
    before = seeded.balance("project:lab").available
    with log_in(base_url, issued.admin) as c:
        page = f"/admin/entries/{usage}"
        data = {**_form(c, page, f"{page}/refund"), "amount": "0.000001", "reason": "probe glitch"}
        first, again = c.post(f"{page}/refund", data=data), c.post(f"{page}/refund", data=data)
        assert first.status_code == again.status_code == 303 and first.headers["location"] == again.headers["location"]
        (refund, _), = _entries(seeded, "refund")
        assert first.headers["location"] == f"/admin/entries/{refund}"
        assert f'href="/admin/entries/{usage}"' in c.get(first.headers["location"]).text
    assert seeded.balance("project:lab").available - before == 1
