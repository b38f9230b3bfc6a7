"""An index on control.queue_request(ended_at), for the answers' window of ended requests each tick
(control.queue.store.standings: live requests or those ended since an hour ago).

Revision ID: control0007
Revises: control0006
Create Date: 2026-12-03
"""

from ledger.migrate import execute_sql_beside

revision = "control0007"
down_revision = "control0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql_beside(__file__)


def downgrade() -> None:
    raise NotImplementedError("the control chain only goes forward, like the ledger's")
