"""What the collector publishes for others to read: read-only views of its registry, GPUs, decision log and
ticks. The API shows them (GET /v1/nodes, /v1/decisions, /healthz) but may not read the collector's tables
(tests/test_tooling.py checks the SQL), so a column the collector renames or adds internally never breaks it.

Revision ID: c0004
Revises: c0003
Create Date: 2026-12-08
"""

from ledger.migrate import execute_sql_beside

revision = "c0004"
down_revision = "c0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql_beside(__file__)


def downgrade() -> None:
    raise NotImplementedError("collector migrations only go forward")
