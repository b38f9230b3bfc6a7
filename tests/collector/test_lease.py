"""Two controllers on one database: exactly one holds the lease; the other takes over when it goes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text

from collector.nodes.lease import Lease


@pytest.fixture
def engines(plain_db_url: str) -> Iterator[tuple[Engine, Engine]]:
    first, second = create_engine(plain_db_url), create_engine(plain_db_url)
    yield first, second
    first.dispose()
    second.dispose()


def test_one_holder_and_takeover_on_release(engines: tuple[Engine, Engine]) -> None:
    active, standby = Lease(engines[0]), Lease(engines[1])
    assert active.acquire() and active.acquire()  # re-confirming does not stack the lock
    assert not standby.acquire() and not standby.held
    active.release()
    assert standby.acquire()
    assert not active.acquire()
    standby.release()


def test_takeover_when_the_holders_session_dies(engines: tuple[Engine, Engine]) -> None:
    active, standby = Lease(engines[0]), Lease(engines[1])
    assert active.acquire()
    with engines[1].connect() as admin:
        # What the server does when the active controller's process is killed: its session ends. The timeout makes
        # the call wait until that backend has exited and let go of its locks; without it the call only signals
        # it, and a busy machine ran the standby's try before the old backend was gone (a CI run, 2026-12-04).
        ended = admin.execute(
            text(
                "SELECT pg_terminate_backend(pid, 30000) FROM pg_locks"
                " WHERE locktype = 'advisory' AND pid <> pg_backend_pid()"
            )
        ).scalars().all()
        admin.commit()
    assert ended and all(ended), ended
    assert standby.acquire()
    assert not active.acquire()  # the old holder notices that it lost the lease
    standby.release()
