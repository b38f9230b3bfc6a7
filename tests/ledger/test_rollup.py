"""The hourly usage rollup (ledger.usage_hourly, ledger.rollup): kept with the tick's charges, equal to the usage
report to the last unit, caught by ``audit verify`` when changed behind the ledger's back, rebuilt on demand."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, ProgrammingError
from sqlalchemy.pool import NullPool

from ledger import prices, reports, rollup, usage
from ledger.bootstrap import bootstrap
from ledger.config import LedgerConfig
from ledger.db import create_app_engine, reading, writing
from ledger.embedded import EmbeddedPostgres
from ledger.environ import Secret
from ledger.errors import LedgerError
from ledger.migrate import LEDGER_MIGRATIONS, LEDGER_VERSION_TABLE, upgrade, upgrade_ledger
from ledger.records import UNITS, UsageRecord, UsageTick
from ledger.service import Ledger
from tests.ledger.helpers import A100, T0, cpu, gpu, priced

USERS = ("alice", "bob", "carol")
NODES = ("n1", "n2")
MODELS = (A100, "NVIDIA A100-PCIE-40GB")
ZONES = ("UTC", "Asia/Shanghai", "America/New_York")
DAYS = 3


class Crash(Exception):
    """Raised after a tick was posted, inside its transaction: the tick must leave nothing behind."""


def _book(conn, stamp):  # type: ignore[no-untyped-def]
    return prices.load(conn)


def _post(engine: Engine, ticks: Sequence[UsageTick], crash: bool = False) -> None:
    try:
        with engine.begin() as conn:
            usage.post_ticks(conn, ticks, _book, "CNY")
            if crash:
                raise Crash
    except Crash:
        pass


def _summed(rows: Sequence[tuple[str | None, str, Decimal, int]]) -> dict[tuple[str | None, str], tuple[Decimal, int]]:
    out: dict[tuple[str | None, str], list[Decimal | int]] = defaultdict(lambda: [Decimal(0), 0])
    for key, unit, quantity, amount in rows:
        out[key, unit][0] += quantity
        out[key, unit][1] += amount
    return {k: (Decimal(q), int(a)) for k, (q, a) in out.items() if q or a}


records = st.builds(
    lambda user, node, resource, model, minute, seconds: (user, node, resource, model, minute, seconds),
    st.sampled_from(USERS), st.sampled_from(NODES), st.sampled_from(("gpu", "cpu", "memory")),
    st.sampled_from(MODELS), st.integers(min_value=0, max_value=DAYS * 24 * 60 - 2),
    st.decimals(min_value=0, max_value=600, places=3))
steps = st.lists(st.tuples(st.sampled_from(("tick", "tick", "crash", "replay")), st.lists(records, min_size=1,
                                                                                           max_size=6)),
                 min_size=1, max_size=8)


def test_rollup_equals_the_ledger_after_ticks_crashes_and_replays(database_factory: Callable[[], str]) -> None:
    @settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(steps=steps, zone=st.sampled_from(ZONES), by=st.sampled_from(sorted(reports.USAGE_KEYS)),
           period=st.tuples(st.integers(min_value=0, max_value=DAYS), st.integers(min_value=0, max_value=DAYS)),
           daily=st.tuples(st.sampled_from(ZONES), st.integers(min_value=0, max_value=8)))
    def run(steps: list[tuple[str, list[tuple[str, str, str, str, int, Decimal]]]], zone: str, by: str,
            period: tuple[int, int], daily: tuple[str, int]) -> None:
        url = database_factory()
        engine = create_app_engine(url)
        try:
            ledger = priced(Ledger(engine, LedgerConfig(database_url=Secret(url))))
            for user in USERS:
                ledger.add_user(user, actor="admin")
            posted: list[UsageTick] = []
            for n, (what, recs) in enumerate(steps):
                if n == daily[1]:  # the daily level's zone, set (and the level rebuilt) between two ticks
                    with writing(engine) as conn:
                        rollup.set_zone(conn, ZoneInfo(daily[0]))
                if what == "replay" and posted:
                    _post(engine, [posted[n % len(posted)]])
                    continue
                by_node: dict[str, list[UsageRecord]] = defaultdict(list)
                for i, (user, node, resource, model, minute, seconds) in enumerate(recs):
                    start = T0 + timedelta(minutes=minute)
                    by_node[node].append(UsageRecord(
                        f"s{n}/{i}", user, resource, seconds, UNITS[resource], start, start + timedelta(minutes=1),
                        "m", f"{node}/boot/{user}/{resource}/{n}/{i}", model if resource == "gpu" else "", {}))
                ticks = [UsageTick(node, tuple(rs)) for node, rs in by_node.items()]
                _post(engine, ticks, crash=what == "crash")
                if what != "crash":
                    posted.extend(ticks)
            tz = ZoneInfo(zone)
            first, last = sorted(period)
            lo, hi = date(2026, 3, 1) + timedelta(days=first - 1), date(2026, 3, 1) + timedelta(days=last + 1)
            with reading(engine) as conn:
                assert rollup.differences(conn) == []
                report = reports.usage(conn, lo, hi, by, tz)
                series = rollup.usage_series(conn, start=reports.local_midnight(lo, tz),
                                             end=reports.local_midnight(hi, tz), bucket="day", tz=tz,
                                             by=by)  # type: ignore[arg-type]
                total = conn.execute(text("SELECT coalesce(sum(records), 0) FROM ledger.usage_hourly")).scalar_one()
                rows = conn.execute(text("SELECT count(*) FROM ledger.usage")).scalar_one()
                assert rollup.daily_differences(conn) == []
                hours = rollup.usage_series(conn, start=reports.local_midnight(lo, tz),
                                            end=reports.local_midnight(hi, tz), bucket="hour", tz=tz,
                                            by=by)  # type: ignore[arg-type]
            # per day, the daily level (when kept in tz) gives what the hours starting in that day sum to
            per_day: dict[tuple[date, str | None, str], list[Any]] = defaultdict(lambda: [Decimal(0), 0, 0])
            for p in hours:
                figures = per_day[p.bucket.astimezone(tz).date(), p.key, p.unit]
                figures[:] = [figures[0] + p.quantity, figures[1] + p.amount, figures[2] + p.records]
            days = {(p.bucket.date(), p.key, p.unit): [p.quantity, p.amount, p.records] for p in series}
            assert days == dict(per_day)
            assert _summed([(p.key, p.unit, p.quantity, p.amount) for p in series]) == _summed(
                [(r.key, r.unit, r.quantity, r.amount) for r in report])
            assert total == rows
        finally:
            engine.dispose()

    run()


def _usage(ledger: Ledger) -> None:
    """alice on two nodes and two hours (GPU and CPU), bob once."""
    priced(ledger)
    for user in ("alice", "bob"):
        ledger.add_user(user, actor="admin")
    ledger.post_usage(UsageTick("n1", (gpu("a1", minute=10 * 60 - 2), cpu("a2", minute=10 * 60 - 2))))
    ledger.post_usage(UsageTick("n2", (gpu("a3", minute=10 * 60, epoch="n2/boot/alice/gpu0"),
                                       gpu("b1", user="bob", minute=10 * 60, epoch="n2/boot/bob/gpu0"))))


def test_hours_users_and_money_of_the_pages(ledger: Ledger) -> None:
    _usage(ledger)
    day = (T0, T0 + timedelta(days=1))
    with reading(ledger.engine) as conn:
        hourly = rollup.usage_series(conn, start=day[0], end=day[1], bucket="hour", tz="UTC", by="model")
        assert [(p.bucket.hour, p.key, p.unit, p.quantity, p.amount, p.records) for p in hourly] == [
            (9, "", "core-second", Decimal(30), 10_000, 1),
            (9, A100, "gpu-second", Decimal(60), 500_000, 1),
            (10, A100, "gpu-second", Decimal(120), 1_000_000, 2)]
        top = rollup.top_users(conn, start=day[0], end=day[1], limit=5)
        assert [(u.user, u.quantity, u.amount) for u in top] == [("alice", Decimal(120), 1_000_000),
                                                                 ("bob", Decimal(60), 500_000)]
        assert rollup.top_users(conn, start=day[0], end=day[1], limit=1)[0].user == "alice"
        shanghai = rollup.charged_per_day(conn, start=day[0], end=day[1], tz="Asia/Shanghai")
        assert [(d.day, d.amount) for d in shanghai] == [(date(2026, 3, 1), 1_510_000)]
        mine = rollup.usage_series(conn, start=day[0], end=day[1], bucket="week", tz="UTC", by="node",
                                   user="alice", resource="gpu")
        assert [(p.bucket.date(), p.key, p.quantity) for p in mine] == [
            (date(2026, 2, 23), "n1", Decimal(60)), (date(2026, 2, 23), "n2", Decimal(60))]
        wallets = rollup.usage_series(conn, start=day[0], end=day[1], bucket="month", tz="UTC", by="wallet")
        assert {p.key for p in wallets} == {"liabilities:wallet:user:alice", "liabilities:wallet:user:bob"}


def test_an_hour_row_counts_where_its_utc_hour_starts_in_a_half_hour_zone(ledger: Ledger) -> None:
    """Kolkata is UTC+05:30: the hour 18:00-19:00 UTC is 23:30-00:30 local; the whole row is in the first day."""
    priced(ledger)
    ledger.add_user("alice", actor="admin")
    ledger.post_usage(UsageTick("n1", (gpu("k", minute=18 * 60 + 40),)))  # ends 18:41 UTC, 00:11 local next day
    with reading(ledger.engine) as conn:
        days = rollup.charged_per_day(conn, start=T0, end=T0 + timedelta(days=2), tz="Asia/Kolkata")
    assert [(d.day, d.amount) for d in days] == [(date(2026, 3, 1), 500_000)]


def test_refunds_and_reversals_are_not_usage(ledger: Ledger) -> None:
    """The usage report counts usage rows, which a refund or reversal leaves alone; so does the rollup."""
    _usage(ledger)
    charged = ledger.statement("alice", date(2026, 3, 1), date(2026, 3, 3)).lines
    ledger.refund(charged[0].entry_id, 100, idem_key="rf", actor="t", reason="r")
    ledger.reverse(charged[1].entry_id, idem_key="rv", actor="t", reason="r")
    with reading(ledger.engine) as conn:
        assert rollup.differences(conn) == []
        series = rollup.usage_series(conn, start=T0, end=T0 + timedelta(days=1), bucket="day", tz="UTC", by="user")
    report = ledger.usage_report(date(2026, 3, 1), date(2026, 3, 2))  # Shanghai days: the same UTC hours here
    assert _summed([(p.key, p.unit, p.quantity, p.amount) for p in series]) == _summed(
        [(r.key, r.unit, r.quantity, r.amount) for r in report])
    assert ledger.verify().ok


def test_verify_names_a_tampered_rollup_row_and_rebuild_mends_it(ledger: Ledger, superuser: Engine) -> None:
    _usage(ledger)
    with superuser.begin() as conn:
        conn.execute(text("UPDATE ledger.usage_hourly SET amount = amount + 1 WHERE model = '' "))
        conn.execute(text("DELETE FROM ledger.usage_hourly WHERE node = 'n2' AND user_id ="
                          " (SELECT id FROM ledger.billing_user WHERE name = 'bob')"))
    report = ledger.verify()
    assert report.counts["usage rollup = usage rows"] == 2
    cpu_row, bob_row = (p for p in report.problems if p.check == "usage-rollup")
    assert "hour 2026-03-01T09:00:00+00:00" in cpu_row.subject and "core-second" in cpu_row.subject
    assert cpu_row.detail == ("stored quantity 30, amount 10001, 1 records;"
                              " usage rows say quantity 30, amount 10000, 1 records")
    assert "node n2" in bob_row.subject and bob_row.detail.startswith("stored no row;")
    with reading(ledger.engine) as conn:
        (cpu_diff, bob_diff) = rollup.differences(conn)
    assert cpu_diff.key.resource == "cpu" and cpu_diff.stored == rollup.RollupFigures(Decimal(30), 10_001, 1)
    assert bob_diff.stored is None and bob_diff.recomputed == rollup.RollupFigures(Decimal(60), 500_000, 1)
    with writing(ledger.engine) as conn:  # one hour only: the other row stays wrong
        assert rollup.rebuild(conn, T0 + timedelta(hours=9), T0 + timedelta(hours=10)) == 2
    assert [p.subject for p in ledger.verify().problems] == [bob_row.subject]
    with writing(ledger.engine) as conn:
        assert rollup.rebuild(conn) == 4
    assert ledger.verify().ok


def test_verify_names_a_tampered_daily_row_and_rebuild_mends_it(ledger: Ledger, superuser: Engine) -> None:
    _usage(ledger)
    with superuser.begin() as conn:
        conn.execute(text("UPDATE ledger.usage_daily SET records = records + 1 WHERE resource = 'cpu'"))
    report = ledger.verify()
    assert report.counts["daily rollup = hourly rollup"] == 1
    (row,) = (p for p in report.problems if p.check == "usage-rollup-daily")
    assert "day 2026-03-01" in row.subject and "core-second" in row.subject  # 09:58 UTC is 17:58 in Shanghai
    assert row.detail.endswith("hourly rows say quantity 30, amount 10000, 1 records")
    with writing(ledger.engine) as conn:  # the hours of that day rebuilt: the whole day is recomputed
        rollup.rebuild(conn, T0 + timedelta(hours=9), T0 + timedelta(hours=10))
    assert ledger.verify().ok


def test_the_daily_zone_is_one_and_a_change_rebuilds_it(ledger: Ledger) -> None:
    _usage(ledger)
    start, end = T0 - timedelta(days=1), T0 + timedelta(days=2)
    with writing(ledger.engine) as conn:
        assert rollup.zone(conn).key == "Asia/Shanghai"  # the migration's: the configuration's default
        assert rollup.set_zone(conn, ZoneInfo("Asia/Shanghai")) is False
        assert rollup.set_zone(conn, ZoneInfo("America/New_York")) is True
        assert rollup.daily_differences(conn) == []
        days = {d.day for d in conn.execute(text("SELECT day FROM ledger.usage_daily"))}
    assert days == {date(2026, 3, 1)}  # 09:58 and 10:00 UTC: the morning of 1 March in New York
    with reading(ledger.engine) as conn:  # Shanghai is no longer the daily level's zone: answered from the hours
        shanghai = rollup.charged_per_day(conn, start=start, end=end, tz="Asia/Shanghai")
        new_york = rollup.charged_per_day(conn, start=start, end=end, tz="America/New_York")
    assert [d.amount for d in shanghai] == [d.amount for d in new_york] == [1_510_000]
    with pytest.raises(DBAPIError, match="unknown time zone Mars/Olympus"), writing(ledger.engine) as conn:
        conn.execute(text("SELECT ledger.set_rollup_zone('Mars/Olympus')"))


def test_only_the_ledger_writes_the_rollup(ledger: Ledger) -> None:
    _usage(ledger)
    with pytest.raises(ProgrammingError, match="permission denied"), ledger.engine.begin() as conn:
        conn.execute(text("UPDATE ledger.usage_hourly SET amount = 0"))
    with pytest.raises(LedgerError, match="whole UTC hour"), reading(ledger.engine) as conn:
        rollup.usage_series(conn, start=T0 + timedelta(minutes=30), end=T0 + timedelta(days=1), bucket="day",
                            tz="UTC")
    with pytest.raises(LedgerError, match="bucket must be one of"), reading(ledger.engine) as conn:
        rollup.usage_series(conn, start=T0, end=T0, bucket="year", tz="UTC")  # type: ignore[arg-type]
    with pytest.raises(LedgerError, match="end is before"), writing(ledger.engine) as conn:
        rollup.rebuild(conn, T0, T0 - timedelta(hours=1))


def test_the_migration_fills_the_rollup_from_usage_posted_before_it(pg_cluster: EmbeddedPostgres) -> None:
    name = "lt_rollup_backfill"
    admin = bootstrap(pg_cluster.url(), name)
    try:
        upgrade(admin, LEDGER_MIGRATIONS, LEDGER_VERSION_TABLE, "0006")
        app_url = pg_cluster.url(user="gpuledger_app", database=name)
        engine = create_app_engine(app_url)
        try:
            _usage(Ledger(engine, LedgerConfig(database_url=Secret(app_url))))
            upgrade_ledger(admin)
            with reading(engine) as conn:
                assert rollup.differences(conn) == []
                points = rollup.usage_series(conn, start=T0, end=T0 + timedelta(days=1), bucket="day", tz="UTC")
            assert [(p.unit, p.quantity, p.records) for p in points] == [("core-second", Decimal(30), 1),
                                                                         ("gpu-second", Decimal(180), 3)]
        finally:
            engine.dispose()
    finally:
        owner = create_engine(pg_cluster.url(), poolclass=NullPool, isolation_level="AUTOCOMMIT")
        with owner.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        owner.dispose()


def test_usage_ending_on_the_hour_is_in_the_next_hour(ledger: Ledger) -> None:
    """As in the usage report: an interval ending at 10:00 is in a period starting at 10:00."""
    _usage(ledger)
    ledger.post_usage(UsageTick("n1", (cpu("a4", minute=10 * 60 - 1, epoch="n1/boot/alice/cpu2"),)))
    with reading(ledger.engine) as conn:
        ten = rollup.usage_series(conn, start=datetime(2026, 3, 1, 10, tzinfo=UTC),
                                  end=datetime(2026, 3, 1, 11, tzinfo=UTC), bucket="hour", tz="UTC")
    assert [(p.unit, p.records) for p in ten] == [("core-second", 1), ("gpu-second", 2)]
