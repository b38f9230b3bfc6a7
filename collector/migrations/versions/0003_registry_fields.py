"""Admin edits of a node's listed flag, region and remarks survive the inventory sync until ops change that
field in the inventory.

Revision ID: c0003
Revises: c0002
Create Date: 2026-11-23
"""

from pathlib import Path

from alembic import op

revision = "c0003"
down_revision = "c0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Straight to psycopg, as in c0001: a function body, and ':' that text() would read as bind parameters.
    driver = op.get_bind().connection.driver_connection
    assert driver is not None, "migrations run on a live psycopg connection"
    driver.execute(Path(__file__).with_suffix(".sql").read_text(encoding="utf-8"))


def downgrade() -> None:
    raise NotImplementedError("collector migrations only go forward")
