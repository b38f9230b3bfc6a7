"""The web console's server-side sessions (issue #14): only the SHA-256 of the cookie value is kept.

Revision ID: api0005
Revises: api0004
Create Date: 2026-12-02
"""

from ledger.migrate import execute_sql_beside

revision = "api0005"
down_revision = "api0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql_beside(__file__)


def downgrade() -> None:
    raise NotImplementedError("the api chain only goes forward, like the ledger's")
