"""The admins' and operators' actions on GPU requests (boost, cancel, extend, approve), each with its actor,
reason and idempotency key (control/queue/admin.py).

Revision ID: control0006
Revises: control0005
Create Date: 2026-12-03
"""

from ledger.migrate import execute_sql_beside

revision = "control0006"
down_revision = "control0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql_beside(__file__)


def downgrade() -> None:
    raise NotImplementedError("the control chain only goes forward, like the ledger's")
