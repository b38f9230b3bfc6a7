"""Admin edits of a node's listed flag, region and remarks survive the inventory sync until ops change that
field in the inventory.

Revision ID: c0003
Revises: c0002
Create Date: 2026-11-23
"""

from ledger.migrate import execute_sql_beside

revision = "c0003"
down_revision = "c0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql_beside(__file__)


def downgrade() -> None:
    raise NotImplementedError("collector migrations only go forward")
