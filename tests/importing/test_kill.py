"""The import killed with SIGKILL at random moments leaves the ledger with nothing of it or all of it, and a run
after a kill that left nothing completes the import (one transaction: PostgreSQL drops the uncommitted rest)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tests.importing.conftest import OldDatabase
from tests.importing.test_import import CUTOVER
from tests.ledger.conftest import database_factory

__all__ = ["database_factory"]
EXTRA_ROWS = 30_000   # enough old usage rows that the import's transaction is open for a while
ROOT = Path(__file__).resolve().parents[2]


def _argv(old: OldDatabase) -> list[str]:
    return [sys.executable, "-m", "gpuledger.cli", "import", "hit-aiot-ops", "--dsn", old.url, "--cutover", CUTOVER]


def _env(app_url: str) -> dict[str, str]:
    return {**os.environ, "GPULEDGER_DATABASE_URL": app_url, "USER": "admin"}


def _complete(old: OldDatabase, app_url: str) -> None:
    done = subprocess.run(_argv(old), env=_env(app_url), cwd=ROOT, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr


def _state(app_url: str) -> tuple[int, int, int, int]:
    engine = create_engine(app_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return tuple(int(conn.execute(text(f"SELECT count(*) FROM ledger.{t}")).scalar_one())  # type: ignore[return-value]  # noqa: S608
                         for t in ("import_run", "billing_user", "journal_entry", "imported_usage"))
    finally:
        engine.dispose()


def test_sigkill_leaves_nothing_or_everything(old_db: OldDatabase, database_factory: Callable[[], str]) -> None:
    with psycopg.connect(old_db.url) as conn:
        conn.execute("INSERT INTO usage_records (node_id, local_username, username, timestamp, cpu_percent,"
                     " memory_mb, gpu_usage, cost) SELECT '60001', 'dave', 'dave',"
                     " timestamp '2026-01-20 00:00' + n * interval '1 second', 33.3, 1.5, '[]', 0.0067"
                     " FROM generate_series(1, %s) n", (EXTRA_ROWS,))
    total_rows = len(old_db.lab.processes) + EXTRA_ROWS
    everything = (1, 5, 5, total_rows)
    nothing = (0, 0, 0, 0)

    whole = database_factory()
    started = time.monotonic()
    _complete(old_db, whole)
    duration = time.monotonic() - started
    assert _state(whole) == everything

    seen = []
    for delay in sorted(random.Random(17).uniform(0.05, duration) for _ in range(4)):
        app_url = database_factory()
        proc = subprocess.Popen(_argv(old_db), env=_env(app_url), cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        state = _state(app_url)
        assert state in (nothing, everything), f"killed after {delay:.2f}s of {duration:.2f}s: {state}"
        seen.append(state)
        if state == nothing:
            _complete(old_db, app_url)
            assert _state(app_url) == everything
    print(f"full import {duration:.2f}s; after the kills: {seen}")
