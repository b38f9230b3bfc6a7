-- History imported from the system a lab moves off (issue #17, `gpuledger import hit-aiot-ops`). Runs as
-- gpuledger_owner.
--   * Why a table of its own: the old system's usage rows and recharges are evidence, not money. They were
--     charged (or not) by the old system under its own rules, so they are never re-rated or posted: the money
--     comes over as one opening-balance entry per user (journal_entry kind adjustment, counter opening, against
--     equity:migration:<source>). Kept here, queryable, tagged with the run (source, cutover) they came with.
--   * ledger.import_run: one row per source (UNIQUE): a second import of the same source finds it and compares
--     the digest of what it would import (source_sha256) with the stored one (ledger.importing).
--   * Times: the old system's TIMESTAMP WITHOUT TIME ZONE columns are read as UTC (its agents stamped UTC).
--   * Money: micro-units (bigint), read from the old DECIMAL text, never through a float.
--   * Append-only like the rest of the ledger (forbid_change); the app role may insert (the import runs as it),
--     the auditor only read; imported_at is the database's clock.

CREATE TABLE ledger.import_run (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source        text NOT NULL UNIQUE CHECK (source <> ''),
    cutover       timestamptz NOT NULL,
    source_sha256 bytea NOT NULL CHECK (length(source_sha256) = 32),
    counts        jsonb NOT NULL,
    actor         text NOT NULL CHECK (actor <> ''),
    imported_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ledger.imported_usage (
    run_id      bigint NOT NULL REFERENCES ledger.import_run (id),
    source_id   bigint NOT NULL,
    node        text NOT NULL,
    linux_user  text NOT NULL,
    user_id     bigint NOT NULL REFERENCES ledger.billing_user (id),
    at          timestamptz NOT NULL,
    pid         integer,
    cpu_percent text,
    memory_mb   text,
    gpu_models  text[] NOT NULL,
    cost        bigint NOT NULL,
    PRIMARY KEY (run_id, source_id)
);
CREATE INDEX imported_usage_user_at ON ledger.imported_usage (user_id, at);

CREATE TABLE ledger.imported_recharge (
    run_id    bigint NOT NULL REFERENCES ledger.import_run (id),
    source_id bigint NOT NULL,
    user_id   bigint NOT NULL REFERENCES ledger.billing_user (id),
    amount    bigint NOT NULL,
    method    text NOT NULL,
    at        timestamptz NOT NULL,
    PRIMARY KEY (run_id, source_id)
);
CREATE INDEX imported_recharge_user_at ON ledger.imported_recharge (user_id, at);

COMMENT ON TABLE ledger.imported_usage IS
'usage rows of an imported system (evidence only: never rated, never posted); cost in micro-units as the old system'
' recorded it, cpu_percent and memory_mb as the old float text, at read as UTC.';
COMMENT ON TABLE ledger.imported_recharge IS
'recharges of an imported system (evidence only: the opening-balance entry carries the money).';

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['import_run', 'imported_usage', 'imported_recharge'] LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON ledger.%I
                        FOR EACH ROW EXECUTE FUNCTION ledger.forbid_change()', t || '_append_only', t);
        EXECUTE format('ALTER TABLE ledger.%I ENABLE ALWAYS TRIGGER %I', t, t || '_append_only');
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON ledger.%I
                        FOR EACH STATEMENT EXECUTE FUNCTION ledger.forbid_change()', t || '_no_truncate', t);
        EXECUTE format('ALTER TABLE ledger.%I ENABLE ALWAYS TRIGGER %I', t, t || '_no_truncate');
    END LOOP;
END $$;

REVOKE ALL ON ledger.import_run, ledger.imported_usage, ledger.imported_recharge FROM PUBLIC;
GRANT SELECT ON ledger.import_run, ledger.imported_usage, ledger.imported_recharge
    TO gpuledger_app, gpuledger_auditor;
GRANT INSERT (source, cutover, source_sha256, counts, actor) ON ledger.import_run TO gpuledger_app;
GRANT INSERT ON ledger.imported_usage, ledger.imported_recharge TO gpuledger_app;
