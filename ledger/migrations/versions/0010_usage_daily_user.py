"""An index on ledger.usage_daily (user_id, day): one user's days of a long period (the console's 90-day usage page)
read by index, not by scanning every user's days of the period (43 ms -> 3 ms over a 24-node lab's year).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # As 0002: owned by gpuledger_owner like the table, no grant needed; plain CREATE INDEX in the migration's
    # transaction (the daily level only takes writes under the writer lock, which a short build merely delays).
    op.execute("CREATE INDEX usage_daily_user ON ledger.usage_daily (user_id, day)")


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only: its migrations only go forward")
