"""Connection tests are kept for a while, not forever: the API removes finished ones past their retention
(each request stays in api.audit).

Revision ID: api0003
Revises: api0002
Create Date: 2026-11-23
"""

from ledger.migrate import execute_sql_beside

revision = "api0003"
down_revision = "api0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql_beside(__file__)


def downgrade() -> None:
    raise NotImplementedError("the api chain only goes forward, like the ledger's")
