"""API fixtures: every chain (ledger, collector, api, control) migrated once into a template database; each test gets a
fresh copy on the session's real PostgreSQL, the app over the app role, and one token per role."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import uvicorn
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool
from starlette.applications import Starlette

from api import tokens
from api.app import create_app
from api.config import ApiConfig
from gpuledger.main import upgrade_all
from ledger.bootstrap import APP_ROLE, bootstrap
from ledger.config import LedgerConfig
from ledger.db import create_app_engine
from ledger.embedded import EmbeddedPostgres
from ledger.environ import Secret
from ledger.service import Ledger

TEMPLATE = "api_template"


@dataclass(frozen=True)
class ApiDatabase:
    name: str
    app_url: str
    admin_url: str


@pytest.fixture(scope="session")
def api_template(pg_cluster: EmbeddedPostgres) -> str:
    upgrade_all(bootstrap(pg_cluster.url(), TEMPLATE), out=lambda _: None)
    return TEMPLATE


def superuser_engine(pg_cluster: EmbeddedPostgres, database: str = "postgres") -> Engine:
    return create_engine(pg_cluster.url(database=database), poolclass=NullPool, isolation_level="AUTOCOMMIT")


@pytest.fixture
def api_db(pg_cluster: EmbeddedPostgres, api_template: str) -> Iterator[ApiDatabase]:
    name = f"at_{uuid.uuid4().hex[:12]}"
    engine = superuser_engine(pg_cluster)
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{api_template}" OWNER gpuledger_owner'))
    try:
        yield ApiDatabase(name, pg_cluster.url(user=APP_ROLE, database=name), pg_cluster.url(database=name))
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        engine.dispose()


@pytest.fixture
def ledger(api_db: ApiDatabase) -> Iterator[Ledger]:
    engine = create_app_engine(api_db.app_url)
    yield Ledger(engine, LedgerConfig(database_url=Secret(api_db.app_url)))
    engine.dispose()


@dataclass(frozen=True)
class Tokens:
    admin: str
    operator: str
    auditor: str
    alice: str
    bob: str
    expired: str
    revoked: str


@pytest.fixture
def issued(ledger: Ledger) -> Tokens:
    """alice and bob exist; one token per role, plus an expired and a revoked admin token."""
    for name in ("alice", "bob"):
        ledger.add_user(name, actor="test")
    with ledger.engine.begin() as conn:
        def make(role: str, user: str | None = None, expires: datetime | None = None) -> tokens.IssuedToken:
            return tokens.issue(conn, name=f"{role}-{user or 'x'}", role=role, billing_user=user, expires_at=expires,
                                created_by="test")
        revoked = make("admin")
        tokens.revoke(conn, revoked.info.id)
        return Tokens(make("admin").token, make("operator").token, make("auditor").token,
                      make("user", "alice").token, make("user", "bob").token,
                      make("admin", expires=datetime.now(UTC) - timedelta(seconds=1)).token, revoked.token)


@contextmanager
def serving(app: Starlette, config: ApiConfig | None = None) -> Iterator[str]:
    """uvicorn on a free loopback port in a thread, with ``config``'s uvicorn options (TLS included); yields the
    base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    # As served in production (ApiConfig.uvicorn_options): no proxy configured, X-Forwarded-For ignored.
    config = config or ApiConfig()
    options = {k: v for k, v in config.uvicorn_options().items() if k not in ("host", "port")}
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", **options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"{'https' if config.tls_cert_file else 'http'}://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def base_url(ledger: Ledger) -> Iterator[str]:
    with serving(create_app(ledger, ApiConfig(auth_failures=100_000))) as url:
        yield url


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
