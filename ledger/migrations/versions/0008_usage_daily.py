"""The daily level of the usage rollup (issue #14 item 6): ledger.usage_daily, per local day in the zone stored in
ledger.rollup_zone, kept by the same trigger as ledger.usage_hourly in the same transaction.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from ledger.migrate import execute_sql_beside

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql_beside(__file__)


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only: its migrations only go forward")
