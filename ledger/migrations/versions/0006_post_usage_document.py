"""The post_usage document with readable keys (one documented contract, ledger.tickdoc on the Python side), the
writer lock as one SQL function that every function taking or checking it calls, and who a Linux user bills to
as one SQL function (issue #13).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08
"""

from ledger.migrate import execute_sql_beside

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql_beside(__file__)


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only: its migrations only go forward")
