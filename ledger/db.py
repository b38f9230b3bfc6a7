"""Engines and transactions. Every ledger write goes through :func:`writing`: one READ COMMITTED
transaction holding the single-writer advisory lock, sealed into the hash chain just before COMMIT (where
the deferred balance checks run). Driver errors that mean "no database" become LedgerUnavailable here."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from ledger.errors import InvalidClose, LedgerError, LedgerUnavailable, PeriodClosed

# pg_advisory_xact_lock key of the ledger writer; the schema's require_writer_lock() checks for it.
WRITER_LOCK = 1735420007


def create_app_engine(url: str) -> Engine:
    """An engine for the app role; whoever creates it disposes of it (``Ledger.close``).

    No pre-ping (a round trip per transaction on the hot path): a dropped connection fails its transaction
    with LedgerUnavailable, SQLAlchemy discards it, and the caller's retry gets a fresh one."""
    return create_engine(url, pool_size=5, max_overflow=5, pool_recycle=3600)


# The schema's own refusals (migration 0005): SQLSTATE -> the error, built from the JSON the SQL puts in DETAIL.
_REFUSALS: dict[str, type[LedgerError]] = {"GL001": PeriodClosed, "GL002": InvalidClose}


def _unavailable(exc: DBAPIError) -> bool:
    sqlstate = getattr(exc.orig, "sqlstate", None)
    return isinstance(exc, InterfaceError) or (
        isinstance(exc, OperationalError) and (sqlstate is None or sqlstate.startswith("08"))
    )


@contextmanager
def translated() -> Iterator[None]:
    """Turn connection-level driver failures into LedgerUnavailable and the schema's refusals into their
    typed errors; everything else passes through."""
    try:
        yield
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
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": WRITER_LOCK})
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
