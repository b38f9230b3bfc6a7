"""Alembic environment of the ledger chain (run through ledger.migrate.upgrade)."""

from ledger.migrate import run_env

run_env()
