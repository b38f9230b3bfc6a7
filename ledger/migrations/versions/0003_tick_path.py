"""The tick path in one server call (ledger.post_usage: late writer lock, re-checks, insert, seal) and one
deferred balance check per transaction instead of one per entry (issue #2).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from ledger.migrate import execute_sql_beside

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql_beside(__file__)


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only: its migrations only go forward")
