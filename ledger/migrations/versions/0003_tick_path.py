"""The tick path in one server call (ledger.post_usage: late writer lock, re-checks, insert, seal) and one
deferred balance check per transaction instead of one per entry (issue #2).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from pathlib import Path

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Straight to psycopg, as 0001: several statements with dollar quoting and ':' that text() would misread.
    driver = op.get_bind().connection.driver_connection
    assert driver is not None
    driver.execute(Path(__file__).with_suffix(".sql").read_text(encoding="utf-8"))


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only: its migrations only go forward")
