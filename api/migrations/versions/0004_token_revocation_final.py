"""A token's revocation is final: revoked_at is written once (issue #12). The app role may UPDATE that one
column (api0001) to revoke; it could also set it back to NULL and bring a revoked token back to life.

Revision ID: api0004
Revises: api0003
Create Date: 2026-12-01
"""

from ledger.migrate import execute_sql_beside

revision = "api0004"
down_revision = "api0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql_beside(__file__)


def downgrade() -> None:
    raise NotImplementedError("the api chain only goes forward, like the ledger's")
