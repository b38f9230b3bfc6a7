"""Cheaper checks on the tick path (issue #4): ledger.post_usage compares high-water marks instead of re-reading
keys, epochs and grants; the per-statement reference triggers look rows up by key instead of scanning a table.

Functions only, no data, so unlike the earlier migrations this one can go back: downgrade puts back the
definitions 0003 left (0004_tick_checks.down.sql).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from ledger.migrate import execute_sql_beside

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql_beside(__file__)


def downgrade() -> None:
    execute_sql_beside(__file__, ".down.sql")
