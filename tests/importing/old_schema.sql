-- The hit-aiot-ops schema as the tests load it (database/schema.sql + migrations 0001-0017 of
-- atoz03/hit-aiot-ops 5041ccb and its fork Samsara-1999/hit-aiot-ops eb6eda0, written from
-- /work/shared/research/seed-hit-aiot-ops.md section 3 and anchors-console-queue-scale.md section 5).
-- Kept as the old system has it, defects included: a mutable DECIMAL(10,2) balance, float CPU and memory,
-- and TIMESTAMP without time zone everywhere. Only what the importer reads, plus the tables beside them
-- that it must leave alone (user_accounts' password hashes, app_settings' SMTP password).

CREATE TABLE users (
    id               serial PRIMARY KEY,
    username         varchar(64) NOT NULL UNIQUE,
    balance          decimal(10, 2) NOT NULL DEFAULT 100,
    status           varchar(16) NOT NULL DEFAULT 'normal',
    blocked_at       timestamp,
    last_charge_time timestamp,
    created_at       timestamp NOT NULL DEFAULT now()
);

CREATE TABLE usage_records (
    id             bigserial PRIMARY KEY,
    record_id      varchar(64),
    node_id        varchar(64) NOT NULL,
    local_username varchar(64),
    username       varchar(64) NOT NULL,
    timestamp      timestamp NOT NULL,
    pid            integer,
    cpu_percent    double precision,
    memory_mb      double precision,
    gpu_count      integer NOT NULL DEFAULT 0,
    command        text,
    gpu_usage      jsonb,
    cost           decimal(10, 4) NOT NULL DEFAULT 0
);

CREATE TABLE recharge_records (
    id         serial PRIMARY KEY,
    username   varchar(64) NOT NULL,
    amount     decimal(10, 2) NOT NULL,
    method     varchar(32),
    created_at timestamp NOT NULL DEFAULT now()
);

CREATE TABLE resource_prices (
    id               serial PRIMARY KEY,
    gpu_model        varchar(128) NOT NULL UNIQUE,
    price_per_minute decimal(10, 4) NOT NULL
);

CREATE TABLE metric_reports (
    report_id        varchar(64) PRIMARY KEY,
    node_id          varchar(64) NOT NULL,
    timestamp        timestamp NOT NULL,
    interval_seconds integer NOT NULL,
    received_at      timestamp NOT NULL DEFAULT now()
);

CREATE TABLE nodes (
    node_id          varchar(64) PRIMARY KEY,
    last_seen        timestamp,
    cpu_model        varchar(128),
    cpu_count        integer,
    gpu_model        varchar(128),
    gpu_count        integer,
    ssh_active_count integer
);

CREATE TABLE admin_accounts (
    username      varchar(64) PRIMARY KEY,
    password_hash text NOT NULL
);

CREATE TABLE user_accounts (
    username      varchar(64) PRIMARY KEY,
    email         varchar(255) UNIQUE,
    password_hash text NOT NULL,
    real_name     varchar(64),
    student_id    varchar(32) UNIQUE
);

CREATE TABLE user_node_accounts (
    node_id          varchar(64) NOT NULL,
    local_username   varchar(64) NOT NULL,
    billing_username varchar(64) NOT NULL,
    created_at       timestamp NOT NULL DEFAULT now(),
    PRIMARY KEY (node_id, local_username)
);

CREATE TABLE app_settings (
    key   varchar(64) PRIMARY KEY,
    value text
);

CREATE TABLE ssh_whitelist (
    node_id        varchar(64) NOT NULL,
    local_username varchar(64) NOT NULL,
    created_by     varchar(64),
    PRIMARY KEY (node_id, local_username)
);

CREATE TABLE ssh_blacklist (
    node_id        varchar(64) NOT NULL,
    local_username varchar(64) NOT NULL,
    created_by     varchar(64),
    PRIMARY KEY (node_id, local_username)
);

CREATE TABLE ssh_exemptions (
    node_id        varchar(64) NOT NULL,
    local_username varchar(64) NOT NULL,
    created_by     varchar(64),
    PRIMARY KEY (node_id, local_username)
);
