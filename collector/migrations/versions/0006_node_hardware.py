"""The node registry's hardware facts published in ``collector.node_status``.

Revision ID: c0006
Revises: c0005
Create Date: 2026-12-02
"""

from ledger.migrate import execute_sql_beside

revision = "c0006"
down_revision = "c0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql_beside(__file__)


def downgrade() -> None:
    raise NotImplementedError("collector migrations only go forward")
