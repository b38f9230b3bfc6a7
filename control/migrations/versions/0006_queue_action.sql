-- One row per admin or operator action on a GPU request (control/queue/admin.py), written in the transaction
-- that changes the request, so the change and its record commit together. The same record serves the API,
-- the console and the CLI (which has no API audit of its own). idempotency_key: the caller's (api:, console-
-- or cli: namespaced); a retry with it finds this row and changes nothing again. Rows are never changed.
CREATE TABLE control.queue_action (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id      bigint NOT NULL REFERENCES control.queue_request (id),
    action          text NOT NULL CHECK (action IN ('boost', 'cancel', 'extend', 'approve')),
    actor           text NOT NULL CHECK (actor <> ''),
    reason          text NOT NULL CHECK (reason <> '' AND length(reason) <= 500),
    before          jsonb NOT NULL,
    after           jsonb NOT NULL,
    at              timestamptz NOT NULL,
    idempotency_key text UNIQUE CHECK (idempotency_key IS NULL OR idempotency_key <> '')
);
CREATE INDEX queue_action_request ON control.queue_action (request_id, id);

GRANT SELECT, INSERT ON control.queue_action TO gpuledger_app;
GRANT SELECT ON control.queue_action TO gpuledger_auditor;
