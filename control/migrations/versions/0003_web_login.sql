-- One row per login flow (control/weblogin.py). Only SHA-256 digests of the code the console shows and of the
-- browser's secret are kept: a database reader can neither type the code on a node before the user does
-- nor redeem the flow. proven_* are set together by the controller when a node reports the code with the
-- kernel's owner of the file; redeemed_at once, by the browser. Flows older than a day are deleted.
CREATE TABLE control.web_login (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code_hash    bytea NOT NULL UNIQUE CHECK (octet_length(code_hash) = 32),
    browser_hash bytea NOT NULL CHECK (octet_length(browser_hash) = 32),
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    proven_at    timestamptz,
    billing_user text,
    node         text,
    linux_user   text,
    redeemed_at  timestamptz,
    CHECK (expires_at > created_at),
    CHECK (
        (proven_at IS NULL AND billing_user IS NULL AND node IS NULL AND linux_user IS NULL)
        OR (proven_at IS NOT NULL AND billing_user IS NOT NULL AND node IS NOT NULL AND linux_user IS NOT NULL)
    ),
    CHECK (redeemed_at IS NULL OR proven_at IS NOT NULL)
);
CREATE INDEX web_login_pending ON control.web_login (expires_at) WHERE proven_at IS NULL;
CREATE INDEX web_login_created ON control.web_login (created_at);

GRANT SELECT, INSERT, DELETE ON control.web_login TO gpuledger_app;
GRANT UPDATE (proven_at, billing_user, node, linux_user, redeemed_at) ON control.web_login TO gpuledger_app;
-- Auditors see who logged in where and when, not the digests.
GRANT SELECT (
    id, created_at, expires_at, proven_at, billing_user, node, linux_user, redeemed_at
) ON control.web_login TO gpuledger_auditor;
