"""Connection tests the API requests and the controller runs: the API cannot open SSH (it imports only
the ledger), so a request is a row the controller claims (started_at), runs and finishes.

Revision ID: api0002
Revises: api0001
Create Date: 2026-11-27
"""

from ledger.migrate import execute_sql_beside

revision = "api0002"
down_revision = "api0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql_beside(__file__)


def downgrade() -> None:
    raise NotImplementedError("the api chain only goes forward, like the ledger's")
