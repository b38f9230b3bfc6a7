-- A browser's login. The cookie holds 256 random bits; the row holds their SHA-256 (a leaked table logs
-- nobody in). A session from a pasted API token names it (token_id): revoking or expiring the token ends
-- the session at its next request (api.console.sessions joins the token on every lookup). A session without
-- a token is a principal proven otherwise (the SSH-proven user login: role user, actor ssh:NAME@NODE).
CREATE TABLE api.console_session (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sha256       bytea NOT NULL UNIQUE CHECK (length(sha256) = 32),
    role         text NOT NULL CHECK (role IN ('admin', 'operator', 'auditor', 'user')),
    token_id     bigint REFERENCES api.token (id),
    billing_user text REFERENCES ledger.billing_user (name),
    actor        text NOT NULL CHECK (actor <> ''),
    csrf         text NOT NULL CHECK (length(csrf) >= 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen    timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    CHECK ((role = 'user') = (billing_user IS NOT NULL)),
    CHECK (expires_at > created_at)
);
CREATE INDEX console_session_token ON api.console_session (token_id) WHERE token_id IS NOT NULL;

GRANT SELECT, INSERT ON api.console_session TO gpuledger_app;
GRANT UPDATE (last_seen, revoked_at) ON api.console_session TO gpuledger_app;
