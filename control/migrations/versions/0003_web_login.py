"""The web console's SSH-proven login (docs/web-login.md): one row per login flow a browser started, proven
when the controller reads its code from a node's spool, redeemed once by the browser that started it.

Revision ID: control0003
Revises: control0002
Create Date: 2026-12-02
"""

from ledger.migrate import execute_sql_beside

revision = "control0003"
down_revision = "control0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql_beside(__file__)


def downgrade() -> None:
    raise NotImplementedError("the control chain only goes forward, like the ledger's")
