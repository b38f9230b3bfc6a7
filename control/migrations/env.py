"""Alembic environment of the control chain (run through ledger.migrate.upgrade, after the ledger's and the api's)."""

from ledger.migrate import run_env

run_env()
