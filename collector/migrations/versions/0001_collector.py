"""The collector schema: node registry, GPUs, samples as evidence, the usage outbox, tiers, decisions, ticks.

Revision ID: c0001
Revises:
Create Date: 2026-11-23
"""

from ledger.migrate import execute_sql_beside

revision = "c0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql_beside(__file__)


def downgrade() -> None:
    raise NotImplementedError("collector migrations only go forward")
