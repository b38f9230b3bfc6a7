"""Alembic environment of the api chain (run through ledger.migrate.upgrade, after the ledger's)."""

from ledger.migrate import run_env

run_env()
