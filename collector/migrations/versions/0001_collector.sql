-- The controller's operational tables. Money lives in the ledger schema; these tables hold the evidence
-- (samples), the work between a sample and its ledger posting (usage_outbox), and what the controller
-- decided and did (decision). The app role may change them; the auditor reads them.

CREATE SCHEMA collector;
GRANT USAGE ON SCHEMA collector TO gpuledger_app, gpuledger_auditor;

-- The node registry: the inventory's view plus what the last ticks learned.
CREATE TABLE collector.node (
    name              text PRIMARY KEY,
    address           text NOT NULL,
    port              integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
    local             boolean NOT NULL DEFAULT FALSE,
    region            text NOT NULL DEFAULT '',
    remarks           text NOT NULL DEFAULT '',
    listed            boolean NOT NULL DEFAULT TRUE,
    in_inventory      boolean NOT NULL DEFAULT TRUE,
    status            text NOT NULL DEFAULT 'unknown'
                      CHECK (status IN ('connected', 'failed', 'unknown', 'hostkey_mismatch')),
    last_outcome      text,
    last_error        text,
    last_attempt_at   timestamptz,
    last_seen_at      timestamptz,
    machine_id        text,
    boot_id           text,
    hardware          jsonb NOT NULL DEFAULT '{}',
    -- The sample the node's usage has been charged up to: the baseline of the next delta.
    charged_sample_id bigint,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE collector.gpu (
    node               text NOT NULL REFERENCES collector.node (name) ON DELETE CASCADE,
    uuid               text NOT NULL,
    index              integer,
    name               text,
    memory_total_bytes bigint,
    state              jsonb NOT NULL DEFAULT '{}',
    seen_at            timestamptz NOT NULL,
    PRIMARY KEY (node, uuid)
);

-- Each sample as evidence, once: the idempotency key is machine-id/boot-id/probe time.
CREATE TABLE collector.sample (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    idem_key       text NOT NULL UNIQUE,
    node           text NOT NULL,
    machine_id     text NOT NULL,
    boot_id        text NOT NULL,
    node_time      timestamptz NOT NULL,
    boottime_ns    bigint NOT NULL CHECK (boottime_ns >= 0),
    received_at    timestamptz NOT NULL,
    skew_ms        bigint NOT NULL,
    flags          text[] NOT NULL DEFAULT '{}',
    payload_sha256 text NOT NULL,
    payload        jsonb NOT NULL
);
CREATE INDEX sample_node_received ON collector.sample (node, received_at);
CREATE INDEX sample_received ON collector.sample (received_at);

-- Usage records computed from a sample, written in the sample's transaction and then posted to the
-- ledger with their idempotency keys: a crash anywhere leaves them here to be posted again.
CREATE TABLE collector.usage_outbox (
    idem_key   text PRIMARY KEY,
    node       text NOT NULL,
    sample_id  bigint NOT NULL,
    record     jsonb NOT NULL,
    state      text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'posted', 'rejected')),
    error      text,
    usage_id   bigint,
    entry_id   bigint,
    amount     bigint,
    attempts   integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    posted_at  timestamptz
);
CREATE INDEX usage_outbox_open ON collector.usage_outbox (node, created_at) WHERE state <> 'posted';

-- Usage between the baseline and a sample that could not be charged (beyond the maximum gap, a reboot's
-- last minutes): recorded, never guessed.
CREATE TABLE collector.unaccounted (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    node        text NOT NULL,
    sample_id   bigint NOT NULL,
    reason      text NOT NULL,
    seconds     numeric NOT NULL CHECK (seconds >= 0),
    detail      jsonb NOT NULL DEFAULT '{}',
    recorded_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE collector.tier_state (
    billing_user text PRIMARY KEY,
    tier         text NOT NULL CHECK (tier IN ('normal', 'warning', 'limited', 'blocked', 'exempt')),
    since        timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE collector.tick (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    controller  text NOT NULL,
    dry_run     boolean NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz,
    summary     jsonb NOT NULL DEFAULT '{}'
);

-- Every enforcement decision, written before the verb runs (outcome 'planned') and completed after it,
-- so no action on a node is ever without its record.
CREATE TABLE collector.decision (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tick_id      bigint REFERENCES collector.tick (id),
    at           timestamptz NOT NULL DEFAULT now(),
    node         text NOT NULL,
    uid          integer,
    linux_user   text,
    billing_user text,
    tier         text,
    balance      bigint,
    verb         text NOT NULL,
    reason       text NOT NULL,
    dry_run      boolean NOT NULL,
    outcome      text NOT NULL CHECK (outcome IN ('planned', 'applied', 'unchanged', 'dry_run', 'failed', 'refused',
                                                  'unsupported', 'unreachable')),
    exit_status  integer,
    detail       jsonb NOT NULL DEFAULT '{}',
    finished_at  timestamptz
);
CREATE INDEX decision_node_at ON collector.decision (node, at);
CREATE INDEX decision_user_at ON collector.decision (billing_user, at);

GRANT SELECT ON ALL TABLES IN SCHEMA collector TO gpuledger_app, gpuledger_auditor;
GRANT INSERT, UPDATE ON collector.node, collector.gpu, collector.tier_state, collector.tick TO gpuledger_app;
GRANT INSERT, DELETE ON collector.sample, collector.unaccounted TO gpuledger_app;
GRANT INSERT, UPDATE, DELETE ON collector.usage_outbox TO gpuledger_app;
GRANT DELETE ON collector.gpu TO gpuledger_app;
GRANT INSERT, UPDATE (outcome, exit_status, detail, finished_at) ON collector.decision TO gpuledger_app;
