"""Decisions name the admin override behind them; retention of decisions, ticks and unaccounted gaps.

Revision ID: c0002
Revises: c0001
Create Date: 2026-11-27
"""

from ledger.migrate import execute_sql_beside

revision = "c0002"
down_revision = "c0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql_beside(__file__)


def downgrade() -> None:
    raise NotImplementedError("collector migrations only go forward")
