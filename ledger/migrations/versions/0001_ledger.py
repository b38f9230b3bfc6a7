"""The ledger schema: accounts, users, projects, prices, usage, entries, postings, balances, hash chain.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from pathlib import Path

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Straight to psycopg: the script is several statements and uses format('%I') and ':' freely, which
    # SQLAlchemy's text() would read as bind parameters.
    driver = op.get_bind().connection.driver_connection
    assert driver is not None
    driver.execute(Path(__file__).with_suffix(".sql").read_text(encoding="utf-8"))


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only: its migrations only go forward")
