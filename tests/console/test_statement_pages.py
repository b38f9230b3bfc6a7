"""A statement page shows its lines 200 at a time, each page with the opening and closing balance and each line
with its running balance; the CSV keeps every line."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

from ledger.money import MICRO
from ledger.service import Ledger
from tests.api.conftest import Tokens
from tests.console.conftest import log_in

ROW = re.compile(r"<tr><td>[^<]+</td><td>recharge</td>")


def test_a_long_statement_is_paged_and_its_csv_is_whole(base_url: str, issued: Tokens, ledger: Ledger) -> None:
    for i in range(203):
        ledger.recharge("user:bob", MICRO + i, idem_key=f"many-{i}", actor="test", memo="r")
    with log_in(base_url, issued.bob) as bob:
        first = bob.get("/users/bob/statement")
        second = bob.get("/users/bob/statement", params={"page": "2"})
        beyond = bob.get("/users/bob/statement", params={"page": "9"})
        csv = bob.get("/users/bob/statement", params={"format": "csv"})
    assert first.status_code == second.status_code == beyond.status_code == 200
    assert len(ROW.findall(first.text)) == 200 and len(ROW.findall(second.text)) == 3
    assert "Lines 1-200 of 203" in first.text and "Lines 201-203 of 203" in second.text
    assert "page=2" in first.text and "page=1" in second.text
    assert beyond.text.count("Lines 201-203 of 203") == 1   # a page past the end shows the last one
    for page in (first, second):
        assert "Opening balance" in page.text and "Closing balance" in page.text
    assert len(csv.text.strip().splitlines()) == 1 + 203 + 2   # header, lines, opening and closing


def test_the_wallet_page_lists_the_newest_entries_only(base_url: str, issued: Tokens, ledger: Ledger) -> None:
    for i in range(103):
        ledger.recharge("user:bob", MICRO + i, idem_key=f"many-{i}", actor="test", memo="r")
    with log_in(base_url, issued.admin) as admin:
        page = admin.get("/admin/wallets/user:bob")
    assert page.status_code == 200
    assert "The newest 100 of 103" in page.text
    ids = [int(i) for i in re.findall(r'href="/admin/entries/(\d+)"', page.text)]
    newest = ledger.statement("user:bob", *_month(ledger)).lines[-100:]
    assert sorted(set(ids)) == sorted(line.entry_id for line in newest)


def _month(ledger: Ledger) -> tuple[date, date]:
    today = datetime.now(ledger.config.timezone).date()
    return today - timedelta(days=30), today + timedelta(days=1)
