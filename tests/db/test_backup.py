"""The backup script the gpuledger_db role ships: a restore drill, retention, and a failed dump leaving nothing.

The script runs as its systemd service runs it (settings in the environment), with the test cluster's own pg_dump.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from ledger.db import create_app_engine
from ledger.embedded import EmbeddedPostgres
from ledger.records import UsageTick
from ledger.service import Ledger
from tests.ledger.conftest import LedgerDatabase, _superuser, cny
from tests.ledger.helpers import cpu, gpu, priced
from tests.rollout.lab import REPO

SCRIPT = REPO / "roles" / "gpuledger_db" / "files" / "gpuledger-db-backup"
DUMP_NAME = r"gpuledger-\d{8}T\d{6}Z\.dump"


def _conninfo(cluster: EmbeddedPostgres, database: str) -> str:
    return f"host=127.0.0.1 port={cluster.port} user=postgres dbname=postgres dbname={database}"


def backup(directory: Path, conninfo: str, *, pg_dump: Path, keep_count: int = 0,
           keep_days: int = 0) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "GPULEDGER_BACKUP_DIR": str(directory), "GPULEDGER_BACKUP_CONNINFO": conninfo,
           "GPULEDGER_BACKUP_KEEP_COUNT": str(keep_count), "GPULEDGER_BACKUP_KEEP_DAYS": str(keep_days),
           "GPULEDGER_BACKUP_PG_DUMP": str(pg_dump)}
    return subprocess.run([str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def pg_dump(pg_cluster: EmbeddedPostgres) -> Path:
    assert pg_cluster.bindir is not None
    return pg_cluster.bindir / "pg_dump"


@pytest.fixture
def backups(tmp_path: Path) -> Path:
    directory = tmp_path / "backups"
    directory.mkdir(mode=0o700)
    return directory


@pytest.fixture
def busy(ledger: Ledger) -> Iterator[Ledger]:
    ledger.add_user("alice", actor="admin")
    ledger.add_user("bob", actor="admin")
    priced(ledger)
    ledger.recharge("alice", cny("20"), idem_key="r1", actor="ops")
    ledger.post_usage(UsageTick("n1", (gpu("k1"), cpu("k2"), gpu("k3", user="bob", epoch="e-bob"))))
    adj = ledger.adjust("bob", cny("5"), idem_key="a1", actor="ops", reason="credit")
    ledger.reverse(adj.entry.id, idem_key="rv1", actor="ops", reason="typo")
    yield ledger


def _dumps(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def test_restore_drill_gives_back_a_ledger_that_verifies_with_the_same_balances(
        busy: Ledger, ledger_db: LedgerDatabase, pg_cluster: EmbeddedPostgres, pg_dump: Path, backups: Path) -> None:
    before = (busy.standings(), busy.trial_balance(), busy.chain_head())
    assert busy.verify().ok
    result = backup(backups, _conninfo(pg_cluster, ledger_db.name), pg_dump=pg_dump)
    assert result.returncode == 0, result.stderr
    [dump] = _dumps(backups)
    assert dump.startswith("gpuledger-") and dump.endswith("Z.dump"), dump
    assert (backups / dump).stat().st_mode & 0o077 == 0, "a dump is readable by the dumping account only"

    # The disaster: the database is gone. The drill: create it empty and restore the dump into it.
    busy.engine.dispose()
    admin = _superuser(pg_cluster)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE "{ledger_db.name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{ledger_db.name}" OWNER gpuledger_owner'))
    admin.dispose()
    assert pg_cluster.bindir is not None
    restored = subprocess.run(
        [str(pg_cluster.bindir / "pg_restore"), "--exit-on-error", "--single-transaction",
         f"--dbname={_conninfo(pg_cluster, ledger_db.name)}", str(backups / dump)],
        capture_output=True, text=True, timeout=120)
    assert restored.returncode == 0, restored.stderr

    engine = create_app_engine(ledger_db.app_url)
    try:
        again = Ledger(engine, busy.config)
        report = again.verify(anchor=(before[2].seq, before[2].sha256) if before[2] else None)
        assert report.ok, report.problems
        assert (again.standings(), again.trial_balance(), again.chain_head()) == before
    finally:
        engine.dispose()


def _plant(directory: Path, *names: str) -> None:
    for name in names:
        (directory / name).write_text("an earlier dump")


def _written(result: subprocess.CompletedProcess[str], directory: Path) -> str:
    assert result.returncode == 0, result.stderr
    [line] = [line for line in result.stdout.splitlines() if " wrote " in line]
    name = Path(line.split(" wrote ")[1].split(" (")[0]).name
    assert re.fullmatch(DUMP_NAME, name) and (directory / name).is_file(), line
    return name


def test_retention_by_count_keeps_the_newest(
        ledger_db: LedgerDatabase, pg_cluster: EmbeddedPostgres, pg_dump: Path, backups: Path) -> None:
    earlier = [f"gpuledger-2020010{day}T000000Z.dump" for day in range(1, 6)]
    _plant(backups, *earlier, "notes.txt", "gpuledger-by-hand.dump")
    written = _written(backup(backups, _conninfo(pg_cluster, ledger_db.name), pg_dump=pg_dump, keep_count=3),
                       backups)
    assert _dumps(backups) == sorted([written, *earlier[-2:], "notes.txt", "gpuledger-by-hand.dump"])


def test_retention_by_age_removes_only_the_old(
        ledger_db: LedgerDatabase, pg_cluster: EmbeddedPostgres, pg_dump: Path, backups: Path) -> None:
    yesterday = (datetime.now(UTC) - timedelta(days=1)).strftime("gpuledger-%Y%m%dT%H%M%SZ.dump")
    _plant(backups, "gpuledger-20200101T000000Z.dump", yesterday)
    written = _written(backup(backups, _conninfo(pg_cluster, ledger_db.name), pg_dump=pg_dump, keep_days=30),
                       backups)
    assert _dumps(backups) == sorted([written, yesterday])


def test_the_dump_just_written_is_never_removed(
        ledger_db: LedgerDatabase, pg_cluster: EmbeddedPostgres, pg_dump: Path, backups: Path) -> None:
    # A dump named in the future (a clock that was wrong) sorts before it, and still does not push it out.
    _plant(backups, "gpuledger-20200101T000000Z.dump", "gpuledger-29990101T000000Z.dump")
    written = _written(backup(backups, _conninfo(pg_cluster, ledger_db.name), pg_dump=pg_dump, keep_count=1,
                              keep_days=1), backups)
    assert _dumps(backups) == [written]


def test_a_failed_dump_exits_non_zero_and_leaves_no_file(
        ledger_db: LedgerDatabase, pg_cluster: EmbeddedPostgres, pg_dump: Path, backups: Path) -> None:
    (backups / "gpuledger-20200101T000000Z.dump").write_text("an old dump")
    result = backup(backups, _conninfo(pg_cluster, "no_such_database"), pg_dump=pg_dump, keep_days=1)
    assert result.returncode != 0
    assert "no_such_database" in result.stderr
    assert _dumps(backups) == ["gpuledger-20200101T000000Z.dump"], "nothing written, and no retention after a failure"


def test_a_dump_cut_off_midway_leaves_no_partial_file(backups: Path, tmp_path: Path) -> None:
    """pg_dump that writes part of its file and dies: the partial file is removed, nothing is renamed."""
    fake = tmp_path / "pg_dump"
    fake.write_text('#!/bin/bash\nfor a; do case $a in --file=*) printf half > "${a#--file=}";; esac; done\nexit 1\n')
    fake.chmod(0o755)
    result = backup(backups, "dbname=anything", pg_dump=fake)
    assert result.returncode != 0
    assert _dumps(backups) == []


@pytest.mark.parametrize(("setting", "value"), [("keep_count", "-1"), ("keep_days", "ten")])
def test_bad_settings_are_refused_before_anything_runs(backups: Path, setting: str, value: str) -> None:
    env = {"PATH": os.environ["PATH"], "GPULEDGER_BACKUP_DIR": str(backups), "GPULEDGER_BACKUP_CONNINFO": "dbname=x",
           f"GPULEDGER_BACKUP_{setting.upper()}": value, "GPULEDGER_BACKUP_PG_DUMP": "/bin/false"}
    result = subprocess.run([str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and f"GPULEDGER_BACKUP_{setting.upper()}" in result.stderr
    assert _dumps(backups) == []


def test_a_missing_directory_is_refused(tmp_path: Path) -> None:
    result = backup(tmp_path / "absent", "dbname=x", pg_dump=Path("/bin/true"))
    assert result.returncode == 2 and "does not exist" in result.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_the_script_is_shellcheck_clean() -> None:
    result = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
