"""The operations users filed from a node (cancel, release, claim, request), one row per (user, nonce), so a
replayed drop-box entry changes nothing (control/queue/replays.py).

Numbered 0008 because control0007 is another change's; it revises control0006 here, and whichever of the two
merges second re-points its down_revision at the other.

Revision ID: control0008
Revises: control0006
Create Date: 2026-12-03
"""

from ledger.migrate import execute_sql_beside

revision = "control0008"
down_revision = "control0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql_beside(__file__)


def downgrade() -> None:
    raise NotImplementedError("the control chain only goes forward, like the ledger's")
