"""The reservation charge (issue #15 item 7): ``reservation`` as a resource of the price book and of usage rows (a
granted GPU held and not used, in GPU-seconds, priced by GPU model like ``gpu``), and post_usage writing each
entry's memo from the document (``reservation`` for such a charge, so statements and exports name it).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from ledger.migrate import execute_sql_beside

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql_beside(__file__)


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only: its migrations only go forward")
