-- One row per operation a user filed from a node's drop box (control/queue/replays.py), written in the queue
-- tick's transaction with the operation's effect: a node serves what it handed over until the controller
-- acknowledges it after the commit, so the same (user, nonce) can arrive again, and finding its row here the
-- tick changes nothing and stores nothing. outcome is what the first application said (queued, cancelled,
-- refused: ...). Rows older than control.queue.replays.KEEP are deleted by the tick: longer than a node holds
-- an entry, so a replay always finds its row.
CREATE TABLE control.queue_op (
    billing_user text NOT NULL,
    nonce        text NOT NULL CHECK (nonce ~ '^[A-Za-z0-9_-]{16,64}$'),
    op           text NOT NULL CHECK (op IN ('request', 'cancel', 'release', 'claim')),
    request_id   bigint,
    outcome      text NOT NULL CHECK (length(outcome) <= 200),
    at           timestamptz NOT NULL,
    PRIMARY KEY (billing_user, nonce)
);
CREATE INDEX queue_op_at ON control.queue_op (at);

GRANT SELECT, INSERT, DELETE ON control.queue_op TO gpuledger_app;
GRANT SELECT ON control.queue_op TO gpuledger_auditor;
