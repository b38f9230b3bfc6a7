"""Fixtures shared by every test package: one throwaway PostgreSQL cluster for the whole session.

Each test package builds on ``pg_cluster`` (for example by creating its own database from it);
nothing here mocks the database.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.embedded import EmbeddedPostgres


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Two lanes for scripts/test's ``-n 2 --dist loadgroup``: the VM tests, whose time goes to guests under TCG,
    # beside all the rest, which share this machine's test users, cgroups and sshd ports and so stay in one
    # process. Each lane keeps its session fixtures (its own PostgreSQL, the one VM).
    for item in items:
        item.add_marker(pytest.mark.xdist_group("vm" if item.get_closest_marker("vm") else "host"))


@pytest.fixture(scope="session")
def pg_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    cluster = EmbeddedPostgres(Path(tmp_path_factory.mktemp("pg")) / "data").start()
    try:
        yield cluster
    finally:
        cluster.stop(mode="immediate")
