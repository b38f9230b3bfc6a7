"""Cheaper checks on the tick path (issue #4): ledger.post_usage compares high-water marks instead of re-reading
keys, epochs and grants; the per-statement reference triggers look rows up by key instead of scanning a table.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from ledger.migrate import execute_sql_beside

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql_beside(__file__)


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only: its migrations only go forward")
