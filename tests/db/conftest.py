"""The database role's backup tests build on the ledger's fixtures: a migrated database per test on the session's
real PostgreSQL, whose own pg_dump and pg_restore make and read the dumps."""

from __future__ import annotations

from tests.ledger.conftest import config, ledger, ledger_db, ledger_template, superuser

__all__ = ["config", "ledger", "ledger_db", "ledger_template", "superuser"]
