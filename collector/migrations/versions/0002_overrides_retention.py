"""Decisions name the admin override behind them; retention of decisions, ticks and unaccounted gaps.

Revision ID: c0002
Revises: c0001
Create Date: 2026-11-27
"""

from pathlib import Path

from alembic import op

revision = "c0002"
down_revision = "c0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Straight to psycopg, as in c0001: a function body, and ':' that text() would read as bind parameters.
    driver = op.get_bind().connection.driver_connection
    assert driver is not None, "migrations run on a live psycopg connection"
    driver.execute(Path(__file__).with_suffix(".sql").read_text(encoding="utf-8"))


def downgrade() -> None:
    raise NotImplementedError("collector migrations only go forward")
