"""Engines and transactions. Every ledger write goes through :func:`writing`: one READ COMMITTED
transaction holding the single-writer advisory lock, sealed into the hash chain just before COMMIT (where
the deferred balance checks run). Driver errors that mean "no database" become LedgerUnavailable here."""

from __future__ import annotations

import json
import select
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from ledger.errors import InvalidClose, LedgerError, LedgerUnavailable, PeriodClosed

# The pg_advisory_xact_lock key of the ledger writer. The schema takes it in ledger.writer_lock() and checks it in
# ledger.writer_lock_held() (migration 0006), nowhere else; Python takes it through that function too.
WRITER_LOCK = 1735420007


def create_app_engine(url: str, session_settings: Mapping[str, str] | None = None) -> Engine:
    """An engine for the app role; whoever creates it disposes of it (``Ledger.close``). ``session_settings``
    are PostgreSQL settings every connection of this engine starts with (``options=-c name=value``).

    Instead of SQLAlchemy's pre-ping (a round trip per checkout on the hot path), a pooled connection whose
    socket has something to read while idle is discarded at checkout: that is the server's FATAL message and
    EOF after a restart or a terminated backend, so the first request after ``pg_ctl restart`` gets a fresh
    connection instead of an error. A connection that dies unseen (a host gone without a FIN) still fails its
    transaction with LedgerUnavailable, and SQLAlchemy then discards the whole pool."""
    connect_args = {"options": " ".join(f"-c {k}={v}" for k, v in session_settings.items())} if session_settings else {}
    engine = create_engine(url, pool_size=5, max_overflow=5, pool_recycle=3600, connect_args=connect_args)
    event.listen(engine, "checkout", _discard_if_closed_by_server)
    return engine


def _discard_if_closed_by_server(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    # An idle connection in the pool never has pending input (every reply was read before it was returned).
    # poll, not select: a process with many files may hold descriptors over select's 1024.
    try:
        poller = select.poll()
        poller.register(dbapi_connection.fileno(), select.POLLIN)
    except Exception as exc:   # psycopg raises its own error for a closed connection
        raise DisconnectionError("pooled connection closed") from exc
    if poller.poll(0):
        raise DisconnectionError("the server closed this pooled connection")


# The schema's own refusals (migration 0005): SQLSTATE -> the error, built from the JSON the SQL puts in DETAIL.
_REFUSALS: dict[str, type[LedgerError]] = {"GL001": PeriodClosed, "GL002": InvalidClose}


def _unavailable(exc: DBAPIError) -> bool:
    """No connection, a lost one (SQLAlchemy saw the disconnect), or class 08/57P: connection exceptions, and
    the server shutting down, restarting or not yet accepting (57P01-57P03), as after ``pg_ctl restart``."""
    sqlstate = getattr(exc.orig, "sqlstate", None)
    return isinstance(exc, InterfaceError) or exc.connection_invalidated or (
        isinstance(exc, OperationalError) and (sqlstate is None or sqlstate.startswith(("08", "57P")))
    )


@contextmanager
def translated() -> Iterator[None]:
    """Turn connection-level driver failures, and no free connection in the pool within its timeout, into
    LedgerUnavailable, and the schema's refusals into their typed errors; everything else passes through."""
    try:
        yield
    except PoolTimeout as exc:
        raise LedgerUnavailable(str(exc)) from exc
    except DBAPIError as exc:
        if _unavailable(exc):
            raise LedgerUnavailable(str(exc.orig).strip() or type(exc.orig).__name__) from exc
        refusal = _REFUSALS.get(getattr(exc.orig, "sqlstate", None) or "")
        if refusal is not None:
            raise refusal(**json.loads(exc.orig.diag.message_detail)) from exc  # type: ignore[union-attr]
        raise


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A ledger write transaction: lock, body, seal, COMMIT (deferred checks). Any error rolls back all."""
    with translated(), engine.begin() as conn:
        conn.execute(text("SELECT ledger.writer_lock()"))
        yield conn
        conn.execute(text("SELECT ledger.seal_block()"))


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A read-only REPEATABLE READ transaction, so a report sees one consistent ledger. Both modes go on the
    BEGIN itself (psycopg's ``read_only``), not in a separate SET TRANSACTION: one round trip fewer per read."""
    with translated(), engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        with conn.begin():
            yield conn
