"""Connection tests the API requests and the controller runs: the API cannot open SSH (it imports only
the ledger), so a request is a row the controller claims (started_at), runs and finishes.

Revision ID: api0002
Revises: api0001
Create Date: 2026-11-27
"""

from alembic import op

revision = "api0002"
down_revision = "api0001"
branch_labels = None
depends_on = None

SCHEMA = """
CREATE TABLE api.connection_test (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    node         text NOT NULL CHECK (node <> ''),
    requested_by text NOT NULL,
    request_id   text NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz,
    outcome      text CHECK (outcome IN ('ok', 'failed', 'hostkey_mismatch', 'timeout', 'unknown_node')),
    detail       jsonb
);
CREATE INDEX connection_test_pending ON api.connection_test (id) WHERE finished_at IS NULL;
GRANT SELECT, INSERT ON api.connection_test TO gpuledger_app;
GRANT UPDATE (started_at, finished_at, outcome, detail) ON api.connection_test TO gpuledger_app;
GRANT SELECT ON api.connection_test TO gpuledger_auditor;
"""


def upgrade() -> None:
    for statement in SCHEMA.split(";\n"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("the api chain only goes forward, like the ledger's")
