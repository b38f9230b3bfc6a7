"""Schema ``control``: what admins ask of the controller moves out of ``api`` (issue #13). The settings
versions, enforcement overrides and connection tests were the API's tables that the controller also read and
wrote; now both call the ``control`` package, which owns them. ``ALTER TABLE ... SET SCHEMA`` moves each table
with its rows, ids, identity sequence, indexes, constraints and grants.

The chain runs after the api chain (gpuledger.main.CHAINED_PACKAGES), and the api chain creates these three
tables on every install (api0001, api0002), so this revision always finds them to move.

Revision ID: control0001
Revises:
Create Date: 2026-12-08
"""

from ledger.migrate import execute_sql_beside

revision = "control0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql_beside(__file__)


def downgrade() -> None:
    raise NotImplementedError("the control chain only goes forward, like the ledger's")
