"""Fixtures shared by every test package: one throwaway PostgreSQL cluster for the whole session.

Each test package builds on ``pg_cluster`` (for example by creating its own database from it);
nothing here mocks the database.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.embedded import EmbeddedPostgres


@pytest.fixture(scope="session")
def pg_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    cluster = EmbeddedPostgres(Path(tmp_path_factory.mktemp("pg")) / "data").start()
    try:
        yield cluster
    finally:
        cluster.stop(mode="immediate")
