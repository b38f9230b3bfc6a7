"""The hourly usage rollup (issue #14 item 6): ledger.usage_hourly, kept by a trigger on ledger.usage in the
transaction that inserts the usage, rebuilt by ledger.rebuild_usage_hourly(), backfilled here.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from ledger.migrate import execute_sql_beside

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql_beside(__file__)


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only: its migrations only go forward")
