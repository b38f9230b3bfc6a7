"""The GPU queue (docs/queue.md): one row per request, one per GPU it holds, was offered or was granted, with
partial unique indexes so no GPU is live for two requests even across a controller restart.

Revision ID: control0004
Revises: control0003
Create Date: 2026-12-02
"""

from ledger.migrate import execute_sql_beside

revision = "control0004"
down_revision = "control0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql_beside(__file__)


def downgrade() -> None:
    raise NotImplementedError("the control chain only goes forward, like the ledger's")
