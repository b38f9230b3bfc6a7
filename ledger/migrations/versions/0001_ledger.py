"""The ledger schema: accounts, users, projects, prices, usage, entries, postings, balances, hash chain.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from ledger.migrate import execute_sql_beside

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql_beside(__file__)


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only: its migrations only go forward")
