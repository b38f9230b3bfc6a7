"""Several connections posting the same key at once produce exactly one entry."""

from __future__ import annotations

import threading
from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.engine import Engine

from ledger.config import LedgerConfig
from ledger.db import create_app_engine
from ledger.records import PostResult, TickResult, UsageTick
from ledger.service import Ledger
from tests.ledger.conftest import cny
from tests.ledger.helpers import gpu, priced

THREADS = 8


def race(config: LedgerConfig, call: Callable[[Ledger], object]) -> list[object]:
    engines = [create_app_engine(config.database_url.reveal()) for _ in range(THREADS)]
    ledgers = [Ledger(e, config) for e in engines]
    barrier = threading.Barrier(THREADS)
    results: list[object] = [None] * THREADS

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = call(ledgers[i])
        except Exception as exc:  # collected and asserted on below
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e in engines:
        e.dispose()
    return results


def test_concurrent_recharges_with_one_key(ledger: Ledger, config: LedgerConfig, superuser: Engine) -> None:
    ledger.add_user("alice", actor="admin")
    results = race(config, lambda lg: lg.recharge("alice", cny("5"), idem_key="same", actor="ops"))
    assert all(isinstance(r, PostResult) for r in results), results
    assert sorted(r.created for r in results) == [False] * (THREADS - 1) + [True]  # type: ignore[union-attr]
    assert len({r.entry.id for r in results}) == 1  # type: ignore[union-attr]
    with superuser.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM ledger.journal_entry")).scalar() == 1
    assert ledger.balance("alice").available == cny("5")


def test_concurrent_ticks_with_the_same_records(ledger: Ledger, config: LedgerConfig, superuser: Engine) -> None:
    ledger.add_user("alice", actor="admin")
    priced(ledger)
    tick = UsageTick("n1", (gpu("k1"), gpu("k2", minute=1)))
    results = race(config, lambda lg: lg.post_usage(tick))
    assert all(isinstance(r, TickResult) and not r.rejected for r in results), results
    assert sum(o.created for r in results for o in r.posted) == 2  # type: ignore[union-attr]
    with superuser.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM ledger.usage")).scalar() == 2
        assert conn.execute(text("SELECT count(*) FROM ledger.journal_entry")).scalar() == 2
    assert ledger.balance("alice").available == -cny("1")
    assert ledger.verify().ok
