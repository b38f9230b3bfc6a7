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
        later = re.search(r'href="\?([^"]*after=\d+)" rel="next"', first.text)
        assert later is not None
        second = bob.get("/users/bob/statement?" + later.group(1).replace("&amp;", "&"))
        earlier = re.search(r'href="\?([^"]*before=\d+)" rel="prev"', second.text)
        assert earlier is not None
        back = bob.get("/users/bob/statement?" + earlier.group(1).replace("&amp;", "&"))
        csv = bob.get("/users/bob/statement", params={"format": "csv"})
        both = bob.get("/users/bob/statement", params={"after": "1", "before": "2"})
        last = bob.get("/users/bob/statement", params={"before": "0"})   # the end: the last page
    assert first.status_code == second.status_code == back.status_code == 200
    assert len(ROW.findall(first.text)) == 200 and len(ROW.findall(second.text)) == 3
    assert "Lines 1-200 of 203" in first.text and "Lines 201-203 of 203" in second.text
    assert "Lines 1-200 of 203" in back.text and 'rel="prev"' not in first.text and 'rel="next"' not in second.text
    for page in (first, second):
        assert "Opening balance" in page.text and "Closing balance" in page.text
    # header, lines, opening and closing, and the idle-held GPU-hours
    assert len(csv.text.strip().splitlines()) == 1 + 203 + 2 + 1
    assert both.status_code >= 400
    assert last.status_code == 200 and "Lines 4-203 of 203" in last.text


def test_statement_pages_are_exactly_the_unpaged_statement(issued: Tokens, ledger: Ledger) -> None:
    """Forward from the start and backward from the end, the pages' lines, running balances, opening and
    closing are the unpaged statement's to the micro-unit; a cursor outside the statement reads as its edge."""
    outside = ledger.recharge("user:alice", MICRO, idem_key="not-bobs", actor="test", memo="r").entry.id
    ledger.recharge("user:bob", 10 * MICRO, idem_key="before-period", actor="test", memo="opening")
    for i in range(23):
        ledger.recharge("user:bob", MICRO + 7 * i, idem_key=f"p-{i}", actor="test", memo="r")
        if i % 5 == 0:
            ledger.adjust("user:bob", -(3 * i + 1), idem_key=f"a-{i}", actor="test", reason="fix")
        if i % 7 == 3:  # a grant sub-account: the wallet's lines come from two accounts
            ledger.grant("user:bob", 2 * MICRO + i, expires_at=None, idem_key=f"g-{i}", actor="test")
    start, end = _month(ledger)
    whole = ledger.statement("user:bob", start, end)
    assert len({line.kind for line in whole.lines}) == 3
    forward, after = [], None
    while True:
        page = ledger.statement_page("user:bob", start, end, limit=4, after=after)
        assert (page.opening, page.closing, page.line_count) == (whole.opening, whole.closing, len(whole.lines))
        assert page.first == len(forward) + 1
        forward += page.lines
        if not page.has_later:
            break
        after = page.lines[-1].entry_id
    assert forward == list(whole.lines)
    backward: list = []
    before = 0
    while True:
        page = ledger.statement_page("user:bob", start, end, limit=5, before=before)
        backward = list(page.lines) + backward
        if not page.has_earlier:
            break
        before = page.lines[0].entry_id
    assert backward == list(whole.lines)
    for cursor in (outside, 10**9):  # not a line of this statement: the start, or the end
        assert ledger.statement_page("user:bob", start, end, limit=4, after=cursor).lines == whole.lines[:4]
        assert ledger.statement_page("user:bob", start, end, limit=4, before=cursor).lines == whole.lines[-4:]
    empty = ledger.statement_page("user:bob", end, end + timedelta(days=1), limit=4)
    assert (empty.lines, empty.line_count, empty.opening, empty.closing) == ((), 0, whole.closing, whole.closing)


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
