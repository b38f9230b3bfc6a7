CREATE SCHEMA api;
REVOKE ALL ON SCHEMA api FROM PUBLIC;
GRANT USAGE ON SCHEMA api TO gpuledger_app, gpuledger_auditor;

-- A token is shown once; only its SHA-256 is kept. The prefix (random, not secret) finds the row.
CREATE TABLE api.token (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    prefix       text NOT NULL UNIQUE CHECK (prefix ~ '^[0-9a-f]{12}$'),
    sha256       bytea NOT NULL CHECK (length(sha256) = 32),
    name         text NOT NULL CHECK (name <> ''),
    role         text NOT NULL CHECK (role IN ('admin', 'operator', 'auditor', 'user')),
    billing_user text REFERENCES ledger.billing_user (name),
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   text NOT NULL,
    expires_at   timestamptz,
    revoked_at   timestamptz,
    CHECK ((role = 'user') = (billing_user IS NOT NULL))
);

-- Mutations of the API's own tables (tokens, settings, overrides, node registry); ledger mutations are
-- audited by the ledger in ledger.admin_audit, with the same request id.
CREATE TABLE api.audit (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    actor      text NOT NULL CHECK (actor <> ''),
    action     text NOT NULL,
    target     text NOT NULL,
    before     jsonb,
    after      jsonb,
    request_id text NOT NULL
);

CREATE TABLE api.settings_version (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    settings jsonb NOT NULL,
    reason   text NOT NULL CHECK (reason <> ''),
    actor    text NOT NULL,
    at       timestamptz NOT NULL DEFAULT now()
);

-- Manual enforcement overrides, newest first per user wins; the controller reads them.
CREATE TABLE api.enforcement_override (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    billing_user text NOT NULL REFERENCES ledger.billing_user (name),
    action       text NOT NULL CHECK (action IN ('exempt', 'lift', 'apply')),
    reason       text NOT NULL CHECK (reason <> ''),
    until        timestamptz,
    actor        text NOT NULL,
    at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX enforcement_override_user ON api.enforcement_override (billing_user, id DESC);

GRANT SELECT ON ALL TABLES IN SCHEMA api TO gpuledger_app;
GRANT SELECT ON api.audit, api.settings_version, api.enforcement_override TO gpuledger_auditor;
GRANT INSERT ON api.token, api.audit, api.settings_version, api.enforcement_override TO gpuledger_app;
GRANT UPDATE (revoked_at) ON api.token TO gpuledger_app;
