"""Each GPU's hours: how many samples found it free, busy or held but idle, its mean utilization and who held
it, for the console's charts (collector.nodes.gpuactivity), published as the view ``gpu_activity``.

Revision ID: c0005
Revises: c0004
Create Date: 2026-12-02
"""

from ledger.migrate import execute_sql_beside

revision = "c0005"
down_revision = "c0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql_beside(__file__)


def downgrade() -> None:
    raise NotImplementedError("collector migrations only go forward")
