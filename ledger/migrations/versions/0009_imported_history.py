"""The history brought over from the system a lab moves off (issue #17): ledger.import_run, one row per
imported source, and its read-only evidence, ledger.imported_usage and ledger.imported_recharge.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from ledger.migrate import execute_sql_beside

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql_beside(__file__)


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only: its migrations only go forward")
