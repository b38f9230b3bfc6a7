"""The operations users filed from a node (cancel, release, claim, request), one row per (user, nonce), so a
replayed drop-box entry changes nothing (control/queue/replays.py).

Revision ID: control0008
Revises: control0007
Create Date: 2026-12-03
"""

from ledger.migrate import execute_sql_beside

revision = "control0008"
down_revision = "control0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql_beside(__file__)


def downgrade() -> None:
    raise NotImplementedError("the control chain only goes forward, like the ledger's")
