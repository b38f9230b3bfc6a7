"""Reports use the configured time zone for period boundaries (the replaced system was 8 hours off)."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from ledger.bootstrap import bootstrap
from ledger.config import LedgerConfig
from ledger.db import WRITER_LOCK, create_app_engine, reading
from ledger.embedded import EmbeddedPostgres
from ledger.environ import Secret
from ledger.errors import LedgerError
from ledger.migrate import LEDGER_MIGRATIONS, LEDGER_VERSION_TABLE, current, upgrade, upgrade_ledger
from ledger.records import UsageRecord, UsageTick
from ledger.service import Ledger
from tests.ledger.conftest import LedgerDatabase, cny
from tests.ledger.helpers import cpu, gpu, priced

HEAD = "0011"
_GRANTS = """
SELECT grantee, table_name, privilege_type, NULL AS column_name FROM information_schema.role_table_grants
 WHERE table_schema = 'ledger'
UNION ALL
SELECT grantee, table_name, privilege_type, column_name FROM information_schema.column_privileges
 WHERE table_schema = 'ledger'
ORDER BY 1, 2, 3, 4
"""


def test_period_boundaries_are_local_midnight(ledger: Ledger, config: LedgerConfig) -> None:
    ledger.add_user("alice", actor="admin")
    priced(ledger)
    # 2026-03-31 17:30 UTC is 2026-04-01 01:30 in Shanghai: an April charge, not a March one
    start = datetime(2026, 3, 31, 17, 30, tzinfo=UTC)
    record = UsageRecord("k", "alice", "gpu", Decimal(60), "gpu-second", start, start.replace(minute=31), "nvml",
                         "e", "NVIDIA A100-SXM4-80GB")
    ledger.post_usage(UsageTick("n1", (record,)))
    march, april = (date(2026, 3, 1), date(2026, 4, 1)), (date(2026, 4, 1), date(2026, 5, 1))
    assert ledger.usage_report(*march) == []
    assert [(r.key, r.amount) for r in ledger.usage_report(*april)] == [("alice", cny("0.5"))]
    assert [(r.account, r.amount) for r in ledger.revenue(*april)] == [("revenues:gpu:nvidia-a100-sxm4-80gb",
                                                                        cny("0.5"))]
    assert ledger.statement("alice", *april).lines[0].amount == -cny("0.5")
    assert config.timezone == ZoneInfo("Asia/Shanghai")
    utc = Ledger(ledger.engine, LedgerConfig(database_url=config.database_url, timezone=ZoneInfo("UTC")))
    assert [r.key for r in utc.usage_report(*march)] == ["alice"]


def test_trial_balance_at_a_date_and_now(ledger: Ledger) -> None:
    ledger.add_user("alice", actor="admin")
    ledger.recharge("alice", cny("3"), idem_key="r", actor="ops")
    assert ledger.trial_balance(date(2020, 1, 1)).rows[0].balance == 0
    now = ledger.trial_balance()
    assert now.total == 0 and {r.account: r.balance for r in now.rows} == {
        "assets:funding:bank": cny("3"), "liabilities:wallet:user:alice": -cny("3")}


def test_bootstrap_and_migrations_are_idempotent(pg_cluster: EmbeddedPostgres, ledger_db: LedgerDatabase) -> None:
    admin = bootstrap(pg_cluster.url(), ledger_db.name)  # the database exists already: nothing changes
    assert current(admin, LEDGER_VERSION_TABLE) == HEAD
    upgrade_ledger(admin)
    assert current(admin, LEDGER_VERSION_TABLE) == HEAD
    engine = create_app_engine(ledger_db.app_url)
    try:
        with engine.connect() as conn:
            owner = conn.execute(text("SELECT tableowner FROM pg_tables WHERE tablename = 'posting'")).scalar()
            assert owner == "gpuledger_owner"
    finally:
        engine.dispose()


def test_unknown_report_keys_and_formats_are_ledger_errors(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="must be one of"):
        ledger.usage_report(date(2026, 1, 1), date(2026, 2, 1), by="colour")
    with pytest.raises(LedgerError, match="must be one of"):
        ledger.export("xlsx", io.StringIO())


# Today's code takes the writer lock through ledger.writer_lock() (0006); a ledger at an older revision has none.
# This stand-in takes the same key; it is dropped before the upgrade, which then creates the real one.
_OLD_WRITER_LOCK = (
    "CREATE FUNCTION ledger.writer_lock() RETURNS void LANGUAGE sql"
    f" AS $$ SELECT pg_advisory_xact_lock({WRITER_LOCK}) $$",
    "GRANT EXECUTE ON FUNCTION ledger.writer_lock() TO gpuledger_app",
)


def test_a_new_migration_applies_to_a_populated_ledger(pg_cluster: EmbeddedPostgres) -> None:
    """Populated at an older revision through the admin path (the tick path needs HEAD's functions)."""
    name = "lt_migrate_populated"
    admin = bootstrap(pg_cluster.url(), name)
    owner = create_engine(admin, poolclass=NullPool)
    try:
        upgrade(admin, LEDGER_MIGRATIONS, LEDGER_VERSION_TABLE, "0002")
        with owner.begin() as conn:
            conn.execute(text("SET LOCAL ROLE gpuledger_owner"))
            for statement in _OLD_WRITER_LOCK:
                conn.exec_driver_sql(statement)
        app_url = pg_cluster.url(user="gpuledger_app", database=name)
        engine = create_app_engine(app_url)
        try:
            ledger = priced(Ledger(engine, LedgerConfig(database_url=Secret(app_url))))
            for who in ("alice", "bob"):
                ledger.add_user(who, actor="admin")
                ledger.recharge(who, cny("10"), idem_key=f"r-{who}", actor="admin")
                ledger.grant(who, cny("1"), expires_at=None, idem_key=f"g-{who}", actor="admin")
            entries = "SELECT id, kind, payload_sha256 FROM ledger.journal_entry ORDER BY id"
            with engine.connect() as conn:
                grants = conn.execute(text(_GRANTS)).all()
                before = conn.execute(text(entries)).all()
            with owner.begin() as conn:
                conn.execute(text("SET LOCAL ROLE gpuledger_owner"))
                conn.execute(text("DROP FUNCTION ledger.writer_lock()"))
            upgrade_ledger(admin)
            assert current(admin, LEDGER_VERSION_TABLE) == HEAD
            with engine.connect() as conn:
                after = conn.execute(text(_GRANTS)).all()
                # the app role only reads 0005's, 0007's and 0008's tables (closing is the owner's, the rollup
                # levels their trigger's, the rollup's zone set_rollup_zone's); nothing else changed
                new = {"period_close", "usage_hourly", "usage_daily", "rollup_zone"}
                imported = {"import_run", "imported_usage", "imported_recharge"}   # 0009: the import writes them
                assert [g for g in after if g.table_name not in new | imported] == grants
                for table in new:
                    assert {(g.grantee, g.privilege_type) for g in after if g.table_name == table} == {
                        ("gpuledger_app", "SELECT")}, table
                for table in imported:
                    assert {(g.grantee, g.privilege_type) for g in after if g.table_name == table} == {
                        ("gpuledger_app", "SELECT"), ("gpuledger_app", "INSERT")}, table
                assert conn.execute(text(entries)).all() == before
                index = conn.execute(text("SELECT indexdef FROM pg_indexes WHERE indexname = 'usage_user_id'")).scalar()
                assert index == "CREATE INDEX usage_user_id ON ledger.usage USING btree (user_id, id)"
                conn.execute(text("SET enable_seqscan = off"))
                plan = conn.execute(text("EXPLAIN SELECT id FROM ledger.usage WHERE user_id = 1 ORDER BY id")).all()
                assert "usage_user_id" in plan[0][0] and "Sort" not in " ".join(r[0] for r in plan)
            # the ledger still writes (the grants are spent first) and verifies, old blocks included
            for who in ("alice", "bob"):
                ledger.post_usage(UsageTick("n1", (gpu(f"{who}-g", who), cpu(f"{who}-c", who))))
            assert ledger.balance("alice").available == cny("10.49") and ledger.verify().ok
        finally:
            engine.dispose()
    finally:
        owner.dispose()
        with create_engine(pg_cluster.url(), poolclass=NullPool, isolation_level="AUTOCOMMIT").connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))


def test_reads_are_one_repeatable_read_read_only_transaction(ledger: Ledger) -> None:
    with reading(ledger.engine) as conn:
        assert conn.execute(text("SHOW transaction_read_only")).scalar() == "on"
        assert conn.execute(text("SHOW transaction_isolation")).scalar() == "repeatable read"
    # the pooled connection goes back with its defaults: writes still work on it
    with ledger.engine.connect() as conn:
        assert conn.execute(text("SHOW transaction_read_only")).scalar() == "off"
        assert conn.execute(text("SHOW transaction_isolation")).scalar() == "read committed"


def test_the_usage_report_of_one_resource_keeps_reservation_apart_from_gpu(ledger: Ledger) -> None:
    """gpu and reservation share their unit and models: by model, only the resource filter tells them apart (the
    price preview reads one resource's usage)."""
    ledger.add_user("alice", actor="admin")
    priced(ledger)
    ledger.add_price("reservation", Decimal("0.20"), Decimal(60), model_pattern="NVIDIA A100*", match="glob",
                     actor="admin", valid_from=datetime(2026, 1, 1, tzinfo=UTC))
    held = replace(gpu("held", seconds="30.5"), resource="reservation", epoch="n1/boot/alice/reservation/0")
    ledger.post_usage(UsageTick("n1", (gpu("used", seconds="29.5"), held)))
    day, next_day = date(2026, 3, 1), date(2026, 3, 2)
    assert [(r.key, r.quantity, r.amount) for r in ledger.usage_report(day, next_day, by="model")] == [
        ("NVIDIA A100-SXM4-80GB", Decimal(60), 245833 + 101667)]
    assert [(r.key, r.quantity, r.amount) for r in ledger.usage_report(day, next_day, "model", "reservation")] == [
        ("NVIDIA A100-SXM4-80GB", Decimal("30.5"), 101667)]
    assert [(r.key, r.amount) for r in ledger.usage_report(day, next_day, by="resource")] == [
        ("gpu", 245833), ("reservation", 101667)]
