"""control.queue_idle_spell: every ended idle spell of a granted GPU, so the idle-held GPU-hours count each
spell and not only the one still open (control.queue.store.idle_update, idle_hours; docs/queue.md).

Revision ID: control0009
Revises: control0008
Create Date: 2026-12-03
"""

from ledger.migrate import execute_sql_beside

revision = "control0009"
down_revision = "control0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql_beside(__file__)


def downgrade() -> None:
    raise NotImplementedError("the control chain only goes forward, like the ledger's")
