"""An index on ledger.usage (user_id, id): a user's usage pages (the API) in id order without a sort or a scan.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Owned by gpuledger_owner like the table (migrations run SET ROLE); an index needs no grant. Plain CREATE
    # INDEX, not CONCURRENTLY: migrations run in one transaction, and usage only takes writes under the
    # writer lock, which a short build merely delays.
    op.execute("CREATE INDEX usage_user_id ON ledger.usage (user_id, id)")


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only: its migrations only go forward")
