"""The collector schema: node registry, GPUs, samples as evidence, the usage outbox, tiers, decisions, ticks.

Revision ID: c0001
Revises:
Create Date: 2026-11-23
"""

from pathlib import Path

from alembic import op

revision = "c0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Straight to psycopg: several statements, and SQLAlchemy's text() would read ':' as bind parameters.
    driver = op.get_bind().connection.driver_connection
    assert driver is not None, "migrations run on a live psycopg connection"
    driver.execute(Path(__file__).with_suffix(".sql").read_text(encoding="utf-8"))


def downgrade() -> None:
    raise NotImplementedError("collector migrations only go forward")
