"""Ledger fixtures: the schema is migrated once into a template database; each test gets a fresh copy
(CREATE DATABASE ... TEMPLATE, ~50 ms) on the session's real PostgreSQL, and connects as the app role."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from ledger.bootstrap import APP_ROLE, bootstrap
from ledger.config import LedgerConfig
from ledger.db import create_app_engine
from ledger.embedded import EmbeddedPostgres
from ledger.environ import Secret
from ledger.migrate import upgrade_ledger
from ledger.money import MICRO
from ledger.service import Ledger

TEMPLATE = "ledger_template"


@dataclass(frozen=True)
class LedgerDatabase:
    name: str
    app_url: str
    admin_url: str


@pytest.fixture(scope="session")
def ledger_template(pg_cluster: EmbeddedPostgres) -> str:
    admin_url = bootstrap(pg_cluster.url(), TEMPLATE)
    upgrade_ledger(admin_url)
    return TEMPLATE


def _superuser(pg_cluster: EmbeddedPostgres, database: str = "postgres") -> Engine:
    return create_engine(pg_cluster.url(database=database), poolclass=NullPool, isolation_level="AUTOCOMMIT")


@pytest.fixture
def ledger_db(pg_cluster: EmbeddedPostgres, ledger_template: str) -> Iterator[LedgerDatabase]:
    name = f"lt_{uuid.uuid4().hex[:12]}"
    engine = _superuser(pg_cluster)
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{ledger_template}" OWNER gpuledger_owner'))
    try:
        yield LedgerDatabase(name, pg_cluster.url(user=APP_ROLE, database=name), pg_cluster.url(database=name))
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        engine.dispose()


@pytest.fixture
def superuser(pg_cluster: EmbeddedPostgres, ledger_db: LedgerDatabase) -> Iterator[Engine]:
    engine = _superuser(pg_cluster, ledger_db.name)
    yield engine
    engine.dispose()


@pytest.fixture
def config(ledger_db: LedgerDatabase) -> LedgerConfig:
    return LedgerConfig(database_url=Secret(ledger_db.app_url))


@pytest.fixture
def ledger(config: LedgerConfig) -> Iterator[Ledger]:
    engine = create_app_engine(config.database_url.reveal())
    yield Ledger(engine, config)
    engine.dispose()


@pytest.fixture
def database_factory(pg_cluster: EmbeddedPostgres, ledger_template: str) -> Iterator[Callable[[], str]]:
    """Fresh ledger databases on demand (one per Hypothesis example), dropped at the end; yields the app URL."""
    admin = create_engine(pg_cluster.url(), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    made: list[str] = []

    def make() -> str:
        name = f"lp_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{ledger_template}"'))
        made.append(name)
        return pg_cluster.url(user=APP_ROLE, database=name)

    yield make
    with admin.connect() as conn:
        for name in made:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


def cny(text_amount: str) -> int:
    return int(Decimal(text_amount) * MICRO)
