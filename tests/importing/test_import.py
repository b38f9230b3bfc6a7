"""`gpuledger import hit-aiot-ops` against a real old database with the old defects: exact results, a rerun that
changes nothing, a dry run that writes nothing, refusals that write nothing."""

from __future__ import annotations

import argparse
import csv
import hashlib
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from ledger.importing import cli
from ledger.service import Ledger
from tests.importing.conftest import OldDatabase
from tests.ledger.conftest import LedgerDatabase, cny

CUTOVER = "2026-02-01T08:00:00+00:00"
Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def gl(ledger_db: LedgerDatabase, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Run:
    monkeypatch.setenv("GPULEDGER_DATABASE_URL", ledger_db.app_url)
    monkeypatch.delenv("GPULEDGER_IMPORT_DSN", raising=False)
    parser = argparse.ArgumentParser(prog="gpuledger")
    cli.register(parser.add_subparsers(dest="command", required=True))

    def run(*argv: str) -> tuple[int, str, str]:
        args = parser.parse_args(["import", "hit-aiot-ops", "--actor", "admin", *argv])
        status = args.func(args)
        out, err = capsys.readouterr()
        return status, out, err
    return run


def old_fingerprint(url: str) -> str:
    """Every row of every old table, hashed: the import must leave the old database as it found it."""
    with psycopg.connect(url) as conn:
        tables = [t for (t,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                                              " ORDER BY tablename")]
        digest = hashlib.sha256()
        for table in tables:
            for row in conn.execute(f"SELECT t::text FROM {table} t ORDER BY t::text"):  # noqa: S608 (catalog names)
                digest.update(f"{table}:{row[0]}\n".encode())
        return digest.hexdigest()


def ledger_rows(superuser: Engine) -> dict[str, int]:
    with superuser.connect() as conn:
        return {t: int(conn.execute(text(f"SELECT count(*) FROM ledger.{t}")).scalar_one())  # noqa: S608
                for t in ("billing_user", "journal_entry", "node_user_map", "price_version", "import_run",
                          "imported_usage", "imported_recharge", "admin_audit")}


def test_the_import_carries_the_old_lab_over_exactly(gl: Run, old_db: OldDatabase, ledger: Ledger,
                                                     superuser: Engine, tmp_path: Path) -> None:
    before = old_fingerprint(old_db.url)
    report = tmp_path / "reconciliation.csv"
    status, out, err = gl("--dsn", old_db.url, "--cutover", CUTOVER, "--node", "60001=gpu01",
                          "--report-csv", str(report))
    assert (status, err) == (0, "")
    assert "imported as run" in out
    assert old_fingerprint(old_db.url) == before

    # balances to the last unit: the old DECIMAL(10,2), cents lost and all, is the opening balance
    standings = ledger.standings()
    assert {user: b.available for user, b in standings.items()} == {
        "alice": cny("145.00"), "bob": cny("99.50"), "carol": cny("120.00"), "dave": cny("-20.60"),
        "erin": cny("100.00")}
    assert {user: b.tier.value for user, b in standings.items()} == {
        "alice": "normal", "bob": "warning", "carol": "normal", "dave": "blocked", "erin": "normal"}
    assert ledger.trial_balance().total == 0
    assert ledger.verify().ok
    with superuser.connect() as conn:
        dave = conn.execute(text("SELECT id FROM ledger.journal_entry"
                                 " WHERE idem_key = 'import:hit-aiot-ops:opening:dave'")).scalar_one()
    entry = ledger.entry(dave)
    assert (entry.kind, entry.effective_at, entry.memo) == (
        "adjustment", datetime.fromisoformat(CUTOVER), "opening balance from hit-aiot-ops at the cutover")
    assert [(p.account, p.amount) for p in entry.postings] == [
        ("liabilities:wallet:user:dave", cny("20.60")), ("equity:migration:hit-aiot-ops", -cny("20.60"))]

    # the reconciliation: 100 + recharges - costs against the old balance, to the micro-unit
    with report.open() as f:
        rows = {r["user"]: r for r in csv.DictReader(f)}
    assert rows["alice"] == {"user": "alice", "initial credit": "100.000000", "recharges": "50.000000",
                             "usage costs": "5.065000", "expected": "144.935000", "old balance": "145.000000",
                             "difference": "0.065000"}
    assert (rows["dave"]["usage costs"], rows["dave"]["expected"], rows["dave"]["difference"]) == (
        "120.402000", "-20.402000", "-0.198000")
    assert (rows["bob"]["difference"], rows["carol"]["difference"], rows["erin"]["difference"]) == (
        "0.000000", "0.000000", "0.000000")
    assert "total difference -0.133000" in out

    # mappings, with the old node id translated where --node said so; carol has none and is listed for review
    assert {(m.node, m.linux_user, m.user) for m in ledger.list_mappings()} == {
        ("gpu01", "alice", "alice"), ("60002", "alice_w", "alice"), ("60003", "bob", "bob"), ("gpu01", "bob2", "bob"),
        ("gpu01", "dave", "dave"), ("60002", "erin", "erin")}
    assert "no mapping: carol" in out
    assert "exemption: erin is exempt from enforcement, from the old ssh_exemptions (*, erin)" in out
    assert "not imported: ssh_whitelist (60001, guest)" in out and "not imported: ssh_blacklist (60002, mallory)" in out
    assert [u.name for u in ledger.list_users() if u.exempt] == ["erin"]

    # prices: one exact version per model seen, per 60 units, from the cutover; H100 unpriced, never defaulted
    assert sorted((p.resource, p.model_pattern, p.match, p.amount, p.per) for p in ledger.list_prices()) == [
        ("cpu", "", "exact", Decimal("0.0200"), Decimal(60)),
        ("gpu", "NVIDIA A100-SXM4-80GB", "exact", Decimal("0.5000"), Decimal(60)),
        ("gpu", "NVIDIA GeForce RTX 4090", "exact", Decimal("0.3000"), Decimal(60)),
        ("gpu", "Tesla V100-PCIE-32GB", "exact", Decimal("0.4000"), Decimal(60))]
    assert {p.valid_from for p in ledger.list_prices()} == {datetime.fromisoformat(CUTOVER)}
    assert "UNPRICED: NVIDIA H100 80GB HBM3" in out
    assert "not imported: the old price 'RTX 3080'" in out and "not imported: the old price 'RTX 3090'" in out

    # the history, as evidence: every row, costs exact, naive times read as UTC across local midnight
    with superuser.connect() as conn:
        assert conn.execute(text("SELECT count(*), sum(cost) FROM ledger.imported_usage")).one() == (
            len(old_db.lab.processes), cny("125.967000"))  # alice 5.065 + bob 0.5 + dave 120.402
        assert conn.execute(text("SELECT count(*), sum(amount) FROM ledger.imported_recharge")).one() == (
            2, cny("70.00"))
        days = conn.execute(text(
            "SELECT (at AT TIME ZONE 'Asia/Shanghai')::date AS day, count(*) FROM ledger.imported_usage u"
            " JOIN ledger.billing_user b ON b.id = u.user_id WHERE b.name = 'alice' AND u.node = 'gpu01'"
            " GROUP BY day ORDER BY day")).all()
        assert days == [(date(2026, 1, 31), 5), (date(2026, 2, 1), 5)]
        first = conn.execute(text("SELECT min(at), min(cpu_percent), min(memory_mb) FROM ledger.imported_usage u"
                                  " WHERE u.node = 'gpu01' AND linux_user = 'alice'")).one()
        assert first == (datetime(2026, 1, 31, 15, 55, tzinfo=UTC), "12.5", "2048.5")
        audit = conn.execute(text("SELECT actor, action, after FROM ledger.admin_audit"
                                  " WHERE action LIKE 'import.%'")).one()
    assert audit.actor == "admin" and audit.action == "import.hit-aiot-ops"
    assert audit.after["counts"] == {"users": 5, "opening_entries": 5, "mappings": 6, "exemptions": 1, "prices": 4,
                                     "unpriced_models": 1, "recharges": 2, "usage_rows": 85}
    assert audit.after["cutover"] == "2026-02-01T08:00:00+00:00"


def test_a_second_run_changes_nothing_and_says_so(gl: Run, old_db: OldDatabase, superuser: Engine) -> None:
    assert gl("--dsn", old_db.url, "--cutover", CUTOVER)[0] == 0
    after_first = ledger_rows(superuser)
    status, out, _ = gl("--dsn", old_db.url)          # no --cutover: the recorded one is reused
    assert status == 0 and "already imported (run" in out and "nothing changed" in out
    assert ledger_rows(superuser) == after_first
    status, out, _ = gl("--dsn", old_db.url, "--dry-run")
    assert status == 0 and "imported already" in out
    assert ledger_rows(superuser) == after_first


def test_changed_old_data_after_an_import_is_refused(gl: Run, old_db: OldDatabase, superuser: Engine) -> None:
    assert gl("--dsn", old_db.url, "--cutover", CUTOVER)[0] == 0
    after_first = ledger_rows(superuser)
    with psycopg.connect(old_db.url) as conn:
        conn.execute("UPDATE users SET balance = balance + 1 WHERE username = 'bob'")
    status, _, err = gl("--dsn", old_db.url)
    assert status == 2 and "was imported already (run" in err and "from other content" in err
    assert ledger_rows(superuser) == after_first


def test_a_dry_run_writes_nothing(gl: Run, old_db: OldDatabase, superuser: Engine) -> None:
    empty = ledger_rows(superuser)
    status, out, err = gl("--dsn", old_db.url, "--cutover", CUTOVER, "--dry-run")
    assert (status, err) == (0, "")
    assert "dry run: nothing written; a run would write the above" in out and "UNPRICED" in out
    assert ledger_rows(superuser) == empty


def test_usage_after_the_cutover_is_refused(gl: Run, old_db: OldDatabase, superuser: Engine) -> None:
    empty = ledger_rows(superuser)
    status, _, err = gl("--dsn", old_db.url, "--cutover", "2026-01-31T16:00:00+00:00")
    assert status == 2 and "after the cutover" in err and "stop its controller first" in err
    assert ledger_rows(superuser) == empty


def test_an_existing_billing_user_of_an_old_name_is_refused(gl: Run, old_db: OldDatabase, ledger: Ledger,
                                                            superuser: Engine) -> None:
    ledger.add_user("carol", actor="admin")
    before = ledger_rows(superuser)
    status, _, err = gl("--dsn", old_db.url, "--cutover", CUTOVER)
    assert status == 2 and "billing user 'carol' exists already" in err
    assert ledger_rows(superuser) == before


def test_the_history_before_the_cutover_reads_back_in_local_days(gl: Run, old_db: OldDatabase,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert gl("--dsn", old_db.url, "--cutover", CUTOVER)[0] == 0
    parser = argparse.ArgumentParser(prog="gpuledger")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["import", "history", "alice", "--from", "2026-02-01", "--to", "2026-02-02",
                              "--format", "csv"])
    assert args.func(args) == 0
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    # 16:00-16:04 UTC are the first minutes of 1 February at +08:00; 15:55-15:59 belong to 31 January
    assert [(r["at"], r["node"], r["gpus"], r["amount"]) for r in rows[:2]] == [
        ("2026-02-01T00:00:00+08:00", "60001", "NVIDIA A100-SXM4-80GB", "0.502500"),
        ("2026-02-01T00:00:00+08:00", "60002", "", "0.004000")]
    assert len(rows) == 10 and {r["kind"] for r in rows} == {"usage"} and {r["source"] for r in rows} == {
        "hit-aiot-ops"}
    args = parser.parse_args(["import", "history", "alice", "--from", "2026-01-01", "--to", "2026-01-31",
                              "--format", "csv"])
    assert args.func(args) == 0
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert [(r["at"], r["kind"], r["amount"]) for r in rows] == [("2026-01-05T09:00:00+08:00", "recharge", "50.000000")]


def test_a_database_that_is_not_the_old_system_is_refused(gl: Run, ledger_db: LedgerDatabase,
                                                          superuser: Engine) -> None:
    empty = ledger_rows(superuser)
    status, _, err = gl("--dsn", ledger_db.admin_url, "--cutover", CUTOVER)
    assert status == 2 and 'the old database is not hit-aiot-ops\'s: relation "users" does not exist' in err
    assert ledger_rows(superuser) == empty


@pytest.mark.parametrize("fmt", ["hledger", "beancount"])
def test_the_imported_books_pass_the_accounting_tools(gl: Run, old_db: OldDatabase, ledger: Ledger, tmp_path: Path,
                                                      fmt: str) -> None:
    assert gl("--dsn", old_db.url, "--cutover", CUTOVER)[0] == 0
    path = tmp_path / f"books.{fmt}"
    with path.open("w") as out:
        ledger.export(fmt, out)
    tool = ([shutil.which("hledger") or "/usr/bin/hledger", "-f", str(path), "check", "-s"] if fmt == "hledger"
            else [str(Path(sys.executable).with_name("bean-check")), str(path)])
    done = subprocess.run(tool, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    equity = "equity:migration:hit-aiot-ops" if fmt == "hledger" else "Equity:Migration:Hit-aiot-ops"
    assert equity in path.read_text()
