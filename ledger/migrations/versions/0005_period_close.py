"""Period close (issue #12): a closed period never changes. ``ledger.period_close`` (append-only) holds each
close; no entry and no usage row may be dated before the newest one, whoever inserts it; only the owner role
closes (``ledger.close_period``, with its admin_audit row); the tick path re-checks the close under the writer
lock like its other marks.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from ledger.migrate import execute_sql_beside

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql_beside(__file__)


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only: its migrations only go forward")
