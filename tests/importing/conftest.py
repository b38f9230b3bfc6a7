"""Import fixtures: the ledger's migrated template (tests/ledger), and beside it an old hit-aiot-ops database
loaded from old_schema.sql with olddata's generated lab, both on the session's real PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from ledger.embedded import EmbeddedPostgres
from tests.importing.olddata import OldLab, generate, load
from tests.ledger.conftest import config, ledger, ledger_db, ledger_template, superuser

__all__ = ["config", "ledger", "ledger_db", "ledger_template", "superuser"]


@dataclass(frozen=True)
class OldDatabase:
    url: str
    lab: OldLab


@pytest.fixture
def old_db(pg_cluster: EmbeddedPostgres) -> Iterator[OldDatabase]:
    name = f"hit_{uuid.uuid4().hex[:12]}"
    engine = create_engine(pg_cluster.url(), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    lab = generate()
    url = pg_cluster.url(database=name).replace("postgresql+psycopg://", "postgresql://")
    load(url, lab)
    try:
        yield OldDatabase(url, lab)
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        engine.dispose()
