"""Period close (issue #12): a closed period never changes, whoever writes; only the owner role closes."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from ledger import cli, journal
from ledger.config import LedgerConfig
from ledger.db import create_app_engine, writing
from ledger.environ import Secret
from ledger.errors import ConfigError, InvalidClose, PeriodClosed
from ledger.records import PostingLine, UsageTick
from ledger.service import Ledger
from tests.ledger.conftest import LedgerDatabase, cny
from tests.ledger.helpers import T0, gpu, priced, tamper, truncate_last_block

MARCH = date(2026, 3, 31)
APRIL = 60 * 24 * 40  # minutes after T0: 2026-04-10, in the open period


@pytest.fixture
def admin(ledger_db: LedgerDatabase) -> Iterator[Ledger]:
    """The ledger as an admin runs the CLI: the app role, and the admin URL for what only the owner may do."""
    engine = create_app_engine(ledger_db.app_url)
    yield Ledger(engine, LedgerConfig(database_url=Secret(ledger_db.app_url),
                                      admin_database_url=Secret(ledger_db.admin_url)))
    engine.dispose()


@pytest.fixture
def closed(admin: Ledger) -> Ledger:
    admin.add_user("alice", actor="admin")
    priced(admin)
    admin.recharge("alice", cny("50"), idem_key="r1", actor="ops")
    admin.post_usage(UsageTick("n1", (gpu("k1"),)))
    admin.close_period(MARCH, actor="auditor", reason="Q1 books")
    return admin


def _back_dated(when: datetime) -> journal.Draft:
    return journal.Draft("recharge", f"late-{when.isoformat()}", when,
                         (PostingLine("assets:funding:bank", cny("1")),
                          PostingLine("liabilities:wallet:user:alice", -cny("1"))), "app")


def test_closing_records_the_close_its_head_and_an_audit_row(closed: Ledger, superuser: Engine) -> None:
    (close,) = closed.period_closes()
    assert (close.through, close.time_zone, close.actor, close.reason) == (MARCH, "Asia/Shanghai", "auditor",
                                                                           "Q1 books")
    assert close.closed_before == datetime(2026, 4, 1, tzinfo=closed.config.timezone)
    assert close.head == closed.verify().head
    with superuser.connect() as conn:
        action, after = conn.execute(text("SELECT action, after FROM ledger.admin_audit ORDER BY id DESC"
                                          " LIMIT 1")).one()
    assert action == "period.close" and after["through"] == "2026-03-31" and after["reason"] == "Q1 books"
    assert after["head_seq"] == close.head.seq if close.head else False
    assert closed.verify().ok


@pytest.mark.parametrize("when", [T0, datetime(2026, 3, 31, 16, 0, tzinfo=UTC) - timedelta(microseconds=1)])
def test_the_app_role_cannot_back_date_an_entry_into_a_closed_period(closed: Ledger, when: datetime) -> None:
    with pytest.raises(PeriodClosed) as refused, writing(closed.engine) as conn:
        journal.post(conn, _back_dated(when))
    assert refused.value.details["closed_before"].startswith("2026-03-31T16:00:00")
    # the same, written by hand as the app role, without the Python path
    with pytest.raises(PeriodClosed), writing(closed.engine) as conn:
        entry = conn.execute(text(
            "INSERT INTO ledger.journal_entry (idem_key, payload_sha256, kind, effective_at, actor)"
            " VALUES ('by-hand', sha256('x'), 'recharge', :at, 'app') RETURNING id"), {"at": when}).scalar_one()
        conn.execute(text(
            "INSERT INTO ledger.posting (entry_id, line, account_id, amount, effective_at)"
            " SELECT :e, n, a.id, CASE n WHEN 1 THEN 1 ELSE -1 END, :at FROM ledger.account a,"
            " (VALUES (1, 'assets:funding:bank'), (2, 'liabilities:wallet:user:alice')) v(n, code)"
            " WHERE a.code = v.code"), {"e": entry, "at": when})
    with writing(closed.engine) as conn:  # the first instant of the open period is open
        assert journal.post(conn, _back_dated(datetime(2026, 3, 31, 16, 0, tzinfo=UTC))).created
    closed.grant("alice", cny("2"), expires_at=T0 + timedelta(days=1), idem_key="g1", actor="admin")
    with pytest.raises(PeriodClosed):  # an expiry dated in March
        closed.expire_grants(T0 + timedelta(days=2), actor="admin")
    assert closed.verify().ok


def test_the_app_role_can_neither_close_nor_reopen(closed: Ledger, ledger_db: LedgerDatabase) -> None:
    for statement in ("SELECT ledger.close_period(DATE '2026-04-30', 'UTC', 'app', 'mine')",
                      "INSERT INTO ledger.period_close (through_day, time_zone, closed_before, actor, reason)"
                      " VALUES (DATE '2026-05-31', 'UTC', TIMESTAMPTZ '2026-06-01Z', 'app', 'mine')",
                      "DELETE FROM ledger.period_close",
                      "UPDATE ledger.period_close SET closed_before = TIMESTAMPTZ '2000-01-01Z'"):
        with pytest.raises(DBAPIError, match="permission denied"), closed.engine.begin() as conn:
            conn.execute(text(statement))
    app_only = Ledger(closed.engine, LedgerConfig(database_url=Secret(ledger_db.app_url)))
    with pytest.raises(ConfigError, match="GPULEDGER_ADMIN_DATABASE_URL"):
        app_only.close_period(date(2026, 4, 30), actor="app", reason="mine")
    assert len(closed.period_closes()) == 1


def test_a_close_moves_forward_and_never_past_today(closed: Ledger) -> None:
    today = datetime.now(closed.config.timezone).date()
    for through, why in ((MARCH, "already closed"), (date(2026, 2, 28), "already closed"),
                         (today, "not over yet"), (date(2026, 4, 30), "reason")):
        with pytest.raises(InvalidClose, match=why) as refused:
            closed.close_period(through, actor="auditor", reason="" if why == "reason" else "again")
        assert refused.value.details["through"] == through.isoformat()
    assert closed.close_period(date(2026, 4, 30), actor="auditor", reason="April").through == date(2026, 4, 30)


def test_late_usage_for_a_closed_period_is_refused_and_reported(closed: Ledger) -> None:
    result = closed.post_usage(UsageTick("n1", (gpu("late", minute=5), gpu("open", minute=APRIL),
                                                gpu("k1"))))  # k1: charged before the close, a replay
    assert [o.idem_key for o in result.posted] == ["open", "k1"]
    assert result.posted[1].created is False
    ((record, error),) = [(r.record.idem_key, r.error) for r in result.rejected]
    assert record == "late" and isinstance(error, PeriodClosed)
    assert error.details == {"at": "2026-03-01T00:06:00+00:00", "closed_before": "2026-03-31T16:00:00+00:00"}
    assert closed.verify().ok


def test_the_tick_path_rechecks_the_close_under_the_writer_lock(closed: Ledger) -> None:
    """A close committed between a tick's read and its write: the write sees a moved mark, writes nothing."""
    with closed.engine.begin() as conn:
        marks = conn.execute(text(
            "SELECT (SELECT max(id) FROM ledger.price_version), (SELECT max(id) FROM ledger.usage),"
            " (SELECT max(id) FROM ledger.journal_entry), (SELECT max(closed_before) FROM ledger.period_close)")).one()
        doc = {"price_stamp": marks[0], "usage_mark": marks[1], "entry_mark": marks[2], "entry_key_prefix": "usage:",
               "usage": [], "postings": []}
        call = text("SELECT ledger.post_usage(CAST(:d AS jsonb))")
        assert conn.execute(call, {"d": json.dumps({**doc, "closed_before": None})}).scalar() is None
        current = marks[3].astimezone(UTC).isoformat()
        assert conn.execute(call, {"d": json.dumps({**doc, "closed_before": current})}).scalar() == []
        with pytest.raises(DBAPIError, match="older than migration 0006"):
            conn.execute(call, {"d": json.dumps(doc)})


def test_period_commands(ledger_db: LedgerDatabase, monkeypatch: pytest.MonkeyPatch,
                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GPULEDGER_DATABASE_URL", ledger_db.app_url)
    parser = argparse.ArgumentParser(prog="gpuledger")
    cli.register(parser.add_subparsers(dest="command", required=True))

    def gl(*argv: str) -> int:
        args = parser.parse_args(argv)
        return int(args.func(args))

    assert gl("period", "close", "--through", "2026-03-31", "--reason", "Q1") == 3  # no admin URL: not configured
    monkeypatch.setenv("GPULEDGER_ADMIN_DATABASE_URL", ledger_db.admin_url)
    assert gl("period", "close", "--through", "2026-03-31", "--reason", "Q1", "--actor", "auditor") == 0
    assert "closed through 2026-03-31" in capsys.readouterr().out
    assert gl("period", "close", "--through", "2026-03-30", "--reason", "Q1") == 2
    assert "already closed through 2026-03-31" in capsys.readouterr().err
    assert gl("period", "list") == 0
    out = capsys.readouterr().out
    assert "2026-03-31" in out and "auditor" in out and "Q1" in out


def test_verify_holds_closed_periods_to_what_they_were(closed: Ledger, superuser: Engine) -> None:
    # what only a superuser with the triggers off can do: a back-dated entry recorded after the close...
    tamper(superuser, "INSERT INTO ledger.journal_entry (idem_key, payload_sha256, kind, effective_at, actor)"
                      " VALUES ('by-superuser', sha256('x'), 'recharge', '2026-03-02Z', 'root')",
           "INSERT INTO ledger.posting (entry_id, line, account_id, amount, effective_at)"
           " SELECT e.id, v.n, a.id, v.amount, e.effective_at FROM ledger.journal_entry e, ledger.account a,"
           " (VALUES (1, 'assets:funding:bank', 7), (2, 'liabilities:wallet:user:alice', -7)) v(n, code, amount)"
           " WHERE e.idem_key = 'by-superuser' AND a.code = v.code",
           "SELECT ledger.seal_block()")
    late = [p for p in closed.verify().problems if p.check == "period-close"]
    assert [p.subject.split()[0] for p in late] == ["entry"] and "closed through 2026-03-31" in late[0].detail
    # ...and the close's own head cut off the chain
    head = closed.period_closes()[0].head
    assert head is not None
    truncate_last_block(superuser)
    truncate_last_block(superuser)
    assert f"block {head.seq}" in {p.subject for p in closed.verify().problems if p.check == "period-close"}
