"""A user's statement says the GPU-hours their grants were held idle in its period, every idle spell counted
(control0009): the console page, its CSV's trailing row and the API's ``idle_held_gpu_hours`` all equal
``store.idle_hours`` over the statement's [start, end) in the lab's zone (until now while it runs); a project's
wallet has null. On a real database with the queue's real tick granting the GPU."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from control.queue import admin, store
from ledger.service import Ledger
from tests.api.conftest import ApiDatabase, Tokens, bearer
from tests.api.queue_lab import A0, run_tick, seed
from tests.console.conftest import log_in
from tests.console.test_queue import _file


@pytest.fixture
def lab(api_db: ApiDatabase, issued: Tokens) -> Tokens:
    seed(api_db.admin_url)
    return issued


def _two_spells(ledger: Ledger) -> None:
    """alice's granted A100 idle from 3 h to 2 h ago (busy since, so that spell ended) and again from 90
    minutes ago until she released it now: 2.50 idle-held GPU-hours, of which the open spell alone was 1.50."""
    rid = _file(ledger, "alice", ["A100"])
    run_tick(ledger)
    run_tick(ledger, busy={A0: "alice"})                       # her process on the offered GPU: granted
    now = datetime.now(UTC)
    with ledger.engine.begin() as conn:
        store.idle_update(conn, [(rid, A0.node, A0.index, now - timedelta(hours=3), 1)], now=now - timedelta(hours=3))
        store.idle_update(conn, [(rid, A0.node, A0.index, None, 0)], now=now - timedelta(hours=2))
        store.idle_update(conn, [(rid, A0.node, A0.index, now - timedelta(minutes=90), 1)], now=now)
        assert admin.release(conn, user="alice", now=now, request_id=rid)


def _expected(ledger: Ledger, user: str, start: date, end: date) -> Decimal:
    """store.idle_hours over the local days [start, end), until now."""
    zone = ledger.config.timezone
    since, until = (datetime.combine(d, datetime.min.time(), zone) for d in (start, end))
    with ledger.engine.connect() as conn:
        return store.idle_hours(conn, since=since, until=min(until, datetime.now(UTC)), user=user).get(
            user, Decimal("0.00"))


def _shown(page: httpx.Response) -> Decimal:
    assert page.status_code == 200, page.text[:300]
    found = re.search(r'<p id="idle-held">Idle-held GPU-hours in this period: ([0-9.,]+)</p>', page.text)
    assert found is not None, page.text
    return Decimal(found.group(1).replace(",", ""))


def test_the_statement_shows_idle_held_hours_of_every_spell(base_url: str, lab: Tokens, ledger: Ledger) -> None:
    _two_spells(ledger)
    today = datetime.now(ledger.config.timezone).date()
    periods = [(today - timedelta(days=2), today + timedelta(days=1)),   # both spells whole
               (today, today + timedelta(days=1)),                       # clipped at local midnight
               (today - timedelta(days=10), today - timedelta(days=5))]  # none
    wide = _expected(ledger, "alice", *periods[0])
    assert wide == Decimal("2.50")
    assert _expected(ledger, "alice", *periods[2]) == Decimal("0.00")
    with httpx.Client(base_url=base_url, timeout=30) as api, log_in(base_url, lab.alice) as c:
        for start, end in periods:
            expected = _expected(ledger, "alice", start, end)
            query = {"from": start.isoformat(), "to": end.isoformat()}
            assert _shown(c.get("/users/alice/statement", params=query)) == expected
            sheet = c.get("/users/alice/statement", params={**query, "format": "csv"})
            rows = list(csv.reader(io.StringIO(sheet.text)))
            assert rows[-2][2] == "closing"
            assert rows[-1] == ["", "", "idle_held_gpu_hours", str(expected), "", ""]
            body = api.get("/v1/wallets/alice/statement", params=query, headers=bearer(lab.alice)).json()
            assert body["idle_held_gpu_hours"] == str(expected)
        query = {"from": periods[0][0].isoformat(), "to": periods[0][1].isoformat()}
        bob = api.get("/v1/wallets/user:bob/statement", params=query, headers=bearer(lab.admin)).json()
        assert bob["idle_held_gpu_hours"] == "0.00"
        ledger.add_project("lab", actor="test")
        project = api.get("/v1/wallets/project:lab/statement", params=query, headers=bearer(lab.admin))
        assert project.status_code == 200 and project.json()["idle_held_gpu_hours"] is None
    with log_in(base_url, lab.admin) as c:                                # an admin reads alice's page too
        assert _shown(c.get("/users/alice/statement", params=query)) == wide

