"""Node edits carry the idempotency key of the form or request that made them, so a double submit stores one
edit (control/nodes.py ``edit``).

Revision ID: control0005
Revises: control0004
Create Date: 2026-12-03
"""

from ledger.migrate import execute_sql_beside

revision = "control0005"
down_revision = "control0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql_beside(__file__)


def downgrade() -> None:
    raise NotImplementedError("the control chain only goes forward, like the ledger's")
