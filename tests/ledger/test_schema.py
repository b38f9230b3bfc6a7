"""The invariants PostgreSQL itself holds, tested against the database directly (not through Python)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, ProgrammingError

from ledger.db import WRITER_LOCK, writing
from ledger.service import Ledger
from tests.ledger.conftest import LedgerDatabase, cny

LEDGER_TABLES = ("account", "price_version", "usage", "journal_entry", "grant_account", "posting", "chain_block",
                 "admin_audit", "idempotency_conflict")


@pytest.fixture
def seeded(ledger: Ledger) -> Ledger:
    ledger.add_user("alice", actor="admin")
    ledger.recharge("alice", cny("10"), idem_key="r1", actor="admin")
    return ledger


def _app(ledger_db: LedgerDatabase) -> Engine:
    return create_engine(ledger_db.app_url)


def test_app_role_has_select_and_insert_only(seeded: Ledger, superuser: Engine) -> None:
    with superuser.connect() as conn:
        for table in LEDGER_TABLES:
            privileges = {p: conn.execute(text("SELECT has_table_privilege('gpuledger_app', :t, :p)"),
                                          {"t": f"ledger.{table}", "p": p}).scalar()
                          for p in ("SELECT", "UPDATE", "DELETE", "TRUNCATE")}
            assert privileges == {"SELECT": True, "UPDATE": False, "DELETE": False, "TRUNCATE": False}, table
        auditor = conn.execute(text("SELECT has_table_privilege('gpuledger_auditor', 'ledger.posting', 'INSERT')"))
        assert auditor.scalar() is False


@pytest.mark.parametrize("statement", [
    "UPDATE ledger.posting SET amount = amount + 1",
    "DELETE FROM ledger.journal_entry",
    "TRUNCATE ledger.posting CASCADE",
    "UPDATE ledger.account_balance SET debits = 0",
    "UPDATE ledger.usage SET amount = 0",
    "DELETE FROM ledger.billing_user",
])
def test_app_role_cannot_change_the_ledger(seeded: Ledger, ledger_db: LedgerDatabase, statement: str) -> None:
    engine = _app(ledger_db)
    try:
        with pytest.raises(ProgrammingError, match="permission denied"), engine.begin() as conn:
            conn.execute(text(statement))
    finally:
        engine.dispose()


@pytest.mark.parametrize("statement", [
    "UPDATE ledger.posting SET amount = amount + 1",
    "DELETE FROM ledger.posting",
    "TRUNCATE ledger.journal_entry CASCADE",
    "UPDATE ledger.chain_block SET block_hash = block_hash",
    "DELETE FROM ledger.admin_audit",
])
def test_even_a_superuser_is_stopped_by_the_triggers(seeded: Ledger, superuser: Engine, statement: str) -> None:
    with pytest.raises(DBAPIError, match="append-only"), superuser.begin() as conn:
        conn.execute(text("SET session_replication_role = replica"))  # ENABLE ALWAYS triggers still fire
        conn.execute(text(statement))


def _entry(conn: object, key: str) -> int:
    return int(conn.execute(text(  # type: ignore[attr-defined]
        "INSERT INTO ledger.journal_entry (idem_key, payload_sha256, kind, effective_at, actor)"
        " VALUES (:k, sha256('x'), 'adjustment', now(), 'test') RETURNING id"), {"k": key}).scalar_one())


def _posting(conn: object, entry_id: int, line: int, code: str, amount: int) -> None:
    conn.execute(text(  # type: ignore[attr-defined]
        "INSERT INTO ledger.posting (entry_id, line, account_id, amount, effective_at)"
        " SELECT :e, :line, id, :amount, (SELECT effective_at FROM ledger.journal_entry WHERE id = :e)"
        " FROM ledger.account WHERE code = :code"), {"e": entry_id, "line": line, "code": code, "amount": amount})


WALLET, BANK = "liabilities:wallet:user:alice", "assets:funding:bank"


@pytest.mark.parametrize("postings", [
    [(WALLET, 1), (BANK, -2)],   # off by one micro-unit
    [(WALLET, 5)],               # a single posting
    [],                          # no postings at all
])
def test_unbalanced_entries_fail_at_commit(seeded: Ledger, ledger_db: LedgerDatabase,
                                           postings: list[tuple[str, int]]) -> None:
    engine = _app(ledger_db)
    try:
        conn = engine.connect()
        tx = conn.begin()
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": WRITER_LOCK})
        entry_id = _entry(conn, "unbalanced")
        for line, (code, amount) in enumerate(postings, start=1):
            _posting(conn, entry_id, line, code, amount)
        with pytest.raises(IntegrityError, match="unbalanced"):
            tx.commit()
        conn.close()
        with engine.connect() as check:
            assert check.execute(text("SELECT count(*) FROM ledger.journal_entry WHERE idem_key = 'unbalanced'")
                                 ).scalar() == 0
    finally:
        engine.dispose()


def test_postings_cannot_be_added_to_an_old_entry(seeded: Ledger, ledger_db: LedgerDatabase) -> None:
    engine = _app(ledger_db)
    try:
        with pytest.raises(IntegrityError, match="in its transaction"), engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": WRITER_LOCK})
            _posting(conn, 1, 3, WALLET, 1)   # a pair that balances itself, added late
            _posting(conn, 1, 4, BANK, -1)
    finally:
        engine.dispose()


def test_writes_without_the_writer_lock_are_refused(seeded: Ledger, ledger_db: LedgerDatabase) -> None:
    engine = _app(ledger_db)
    try:
        with pytest.raises(DBAPIError, match=r"require the writer lock \(SELECT ledger.writer_lock\(\)\)"), \
                engine.begin() as conn:
            _entry(conn, "no-lock")
    finally:
        engine.dispose()


def test_the_database_keeps_grants_from_going_negative(seeded: Ledger, ledger_db: LedgerDatabase) -> None:
    seeded.grant("alice", cny("1"), expires_at=datetime.now(UTC) + timedelta(days=1), idem_key="g1", actor="admin")
    engine = _app(ledger_db)
    try:
        with pytest.raises(IntegrityError, match="limit"), engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": WRITER_LOCK})
            entry_id = _entry(conn, "overdraw-grant")
            _posting(conn, entry_id, 1, WALLET + ":grant:1", cny("1.000001"))
            _posting(conn, entry_id, 2, "expenses:grants", -cny("1.000001"))
    finally:
        engine.dispose()


def test_the_ledgers_own_transaction_helper_fails_at_its_commit(seeded: Ledger) -> None:
    """The psycopg pitfall (a nested transaction() becoming a savepoint, so COMMIT and its deferred checks
    happen later, at close): an unbalanced write must fail when ledger.db.writing() commits."""
    with pytest.raises(IntegrityError, match="unbalanced"), writing(seeded.engine) as conn:
        entry_id = _entry(conn, "helper-unbalanced")
        _posting(conn, entry_id, 1, WALLET, 3)
        _posting(conn, entry_id, 2, BANK, -2)
    assert seeded.verify().ok


def test_one_unbalanced_entry_among_balanced_ones_fails_at_commit(seeded: Ledger, ledger_db: LedgerDatabase,
                                                                  superuser: Engine) -> None:
    """The balance check runs once per transaction over all of its entries (one marker row, one GROUP BY):
    an unbalanced entry between balanced ones, written by hand as the app role, still fails the COMMIT."""
    engine = _app(ledger_db)
    try:
        conn = engine.connect()
        tx = conn.begin()
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": WRITER_LOCK})
        ids = []
        for key, amounts in (("ok-1", (4, -4)), ("bad", (5, -4)), ("ok-2", (7, -7))):
            ids.append(_entry(conn, key))
            _posting(conn, ids[-1], 1, WALLET, amounts[0])
            _posting(conn, ids[-1], 2, BANK, amounts[1])
        with pytest.raises(IntegrityError, match=f"journal entry {ids[1]} is unbalanced: 2 postings summing to 1"):
            tx.commit()
        conn.close()
        with superuser.connect() as check:
            assert check.execute(text("SELECT count(*) FROM ledger.journal_entry WHERE idem_key IN"
                                      " ('ok-1', 'bad', 'ok-2')")).scalar() == 0
            assert check.execute(text("SELECT count(*) FROM ledger.balance_check")).scalar() == 0  # none left over
    finally:
        engine.dispose()


def test_postings_after_an_early_check_are_checked_again_at_commit(seeded: Ledger, ledger_db: LedgerDatabase) -> None:
    engine = _app(ledger_db)
    try:
        with pytest.raises(IntegrityError, match="unbalanced"), engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": WRITER_LOCK})
            entry_id = _entry(conn, "late-line")
            _posting(conn, entry_id, 1, WALLET, 2)
            _posting(conn, entry_id, 2, BANK, -2)
            conn.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))  # the check runs now and passes
            conn.execute(text("SET CONSTRAINTS ALL DEFERRED"))
            _posting(conn, entry_id, 3, WALLET, 1)  # then the entry is unbalanced again
    finally:
        engine.dispose()


def test_the_app_role_cannot_touch_the_balance_markers(seeded: Ledger, ledger_db: LedgerDatabase) -> None:
    engine = _app(ledger_db)
    try:
        for statement in ("INSERT INTO ledger.balance_check VALUES (pg_current_xact_id(), 0)",
                          "DELETE FROM ledger.balance_check"):
            with pytest.raises(ProgrammingError, match="permission denied"), engine.begin() as conn:
                conn.execute(text(statement))
    finally:
        engine.dispose()


def test_reference_checks_look_up_each_new_row_by_key(seeded: Ledger, superuser: Engine) -> None:
    """usage_refs and journal_entry_refs must not scan (or hash) a whole referenced table per statement: the
    plans auto_explain gives for their checks use index lookups only."""
    with superuser.connect() as conn:
        conn = conn.execution_options(isolation_level="READ COMMITTED")  # the lock and the rows, rolled back
        notices: list[str] = []
        driver = conn.connection.driver_connection
        assert driver is not None
        driver.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
        conn.execute(text("LOAD 'auto_explain'"))
        for setting in ("auto_explain.log_min_duration = 0", "auto_explain.log_nested_statements = on",
                        "auto_explain.log_level = notice", "client_min_messages = notice"):
            conn.execute(text(f"SET {setting}"))
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": WRITER_LOCK})
        usage_id = conn.execute(text(
            "INSERT INTO ledger.usage (idem_key, payload_sha256, node, linux_user, user_id, account_id, resource,"
            " quantity, unit, interval_start, interval_end, method, epoch, cumulative_quantity, amount)"
            " SELECT 'k', sha256(''), 'n1', 'alice', b.id, b.wallet_account_id, 'cpu', 1, 'core-second', now(),"
            " now(), 'test', 'e', 1, 0 FROM ledger.billing_user b RETURNING id")).scalar_one()
        conn.execute(text("INSERT INTO ledger.journal_entry (idem_key, payload_sha256, kind, effective_at, usage_id,"
                          " actor) VALUES ('usage:k', sha256(''), 'usage', now(), :u, 'test')"), {"u": usage_id})
        conn.rollback()
    checks = [n for n in notices if "NOT EXISTS" in n and "FROM new_rows" in n]
    assert len(checks) == 2, notices
    for plan in checks:
        assert "Nested Loop Anti Join" in plan, plan
        assert not any(whole in plan for whole in ("Seq Scan", "Hash Join", "hashed SubPlan", "Merge Join")), plan


def test_the_writer_lock_is_one_function_and_its_key_is_written_there_only(seeded: Ledger, superuser: Engine) -> None:
    """ledger.writer_lock() takes ledger.db.WRITER_LOCK and writer_lock_held() sees it; no other live function
    of the ledger spells the key (every function that takes or checks the lock calls those two)."""
    with superuser.connect() as conn:
        spelled = conn.execute(text(
            "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname = 'ledger' AND p.prosrc LIKE :key ORDER BY 1"), {"key": f"%{WRITER_LOCK}%"}).scalars()
        assert list(spelled) == ["writer_lock", "writer_lock_held"]
        callers = conn.execute(text(
            "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname = 'ledger' AND p.prosrc ~ 'ledger\\.writer_lock(_held)?\\(' ORDER BY 1")).scalars()
        assert list(callers) == ["close_period", "post_usage", "rebuild_usage_hourly", "require_writer_lock",
                                "seal_block", "set_rollup_zone"]
    with seeded.engine.connect() as conn, conn.begin():
        assert conn.execute(text("SELECT ledger.writer_lock_held()")).scalar() is False
        conn.execute(text("SELECT ledger.writer_lock()"))
        assert conn.execute(text("SELECT ledger.writer_lock_held()")).scalar() is True
        held = conn.execute(text("SELECT objid FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
                                 " AND classid = 0 AND objsubid = 1 AND granted")).scalars()
        assert list(held) == [WRITER_LOCK]
