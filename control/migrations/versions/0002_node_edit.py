"""Admin edits of a node's listed flag, region and remarks (PATCH /v1/nodes/{name}) as control's own rows: the
API used to UPDATE the collector's node registry; now it appends an edit and the controller applies it at its
next inventory sync (control/nodes.py).

Revision ID: control0002
Revises: control0001
Create Date: 2026-12-08
"""

from ledger.migrate import execute_sql_beside

revision = "control0002"
down_revision = "control0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql_beside(__file__)


def downgrade() -> None:
    raise NotImplementedError("the control chain only goes forward, like the ledger's")
