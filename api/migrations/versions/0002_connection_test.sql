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
