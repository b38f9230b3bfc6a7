"""The API's own tables: bearer tokens (hashed), its audit rows, settings versions, enforcement overrides.

Revision ID: api0001
Revises:
Create Date: 2026-11-24
"""

from ledger.migrate import execute_sql_beside

revision = "api0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql_beside(__file__)


def downgrade() -> None:
    raise NotImplementedError("the api chain only goes forward, like the ledger's")
