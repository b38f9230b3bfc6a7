-- The ledger schema. Runs as gpuledger_owner (ledger.migrate). Invariants held here, not only in Python:
--   I1 every entry has >= 2 postings summing to 0, checked at COMMIT (deferred constraint triggers)
--   I2 ledger tables are append-only: the app role has INSERT+SELECT only, and ENABLE ALWAYS triggers
--      refuse UPDATE/DELETE/TRUNCATE for everyone, owner and superuser included
--   I3 writes to entries and usage require the single-writer advisory lock (ids in commit order)
--   I4 account_balance is maintained per statement and flagged accounts cannot cross zero
--   I5 a hash chain block is sealed per ledger transaction (seal_block)
--   I6 corrections: one full reversal and one expiry per entry at most
--   I7 references of the high-volume tables (usage, journal_entry, posting) are checked once per statement
--      from transition tables instead of per-row foreign keys (which cost ~4 ms of a 15-row tick); the
--      referenced rows can never be deleted (append-only), so existence at insert time is the whole FK

CREATE SCHEMA ledger;
REVOKE ALL ON SCHEMA ledger FROM PUBLIC;
GRANT USAGE ON SCHEMA ledger TO gpuledger_app, gpuledger_auditor;

CREATE TABLE ledger.account (
    id                             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code                           text NOT NULL UNIQUE
        CHECK (code ~ '^(assets|liabilities|equity|revenues|expenses)(:[a-z0-9_][a-z0-9_.-]*)+$'),
    kind                           text NOT NULL CHECK (kind IN ('asset', 'liability', 'equity', 'revenue', 'expense')),
    currency                       text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- TigerBeetle's names: a flagged account can never have more debits than credits (or the reverse)
    debits_must_not_exceed_credits boolean NOT NULL DEFAULT FALSE,
    credits_must_not_exceed_debits boolean NOT NULL DEFAULT FALSE,
    created_at                     timestamptz NOT NULL DEFAULT now(),
    CHECK (NOT (debits_must_not_exceed_credits AND credits_must_not_exceed_debits)),
    CHECK (split_part(code, ':', 1) = CASE kind WHEN 'asset' THEN 'assets' WHEN 'liability' THEN 'liabilities'
           WHEN 'equity' THEN 'equity' WHEN 'revenue' THEN 'revenues' ELSE 'expenses' END)
);

CREATE TABLE ledger.project (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name              text NOT NULL UNIQUE CHECK (name ~ '^[a-z_][a-z0-9_.-]{0,63}$'),
    display_name      text NOT NULL DEFAULT '',
    wallet_account_id bigint NOT NULL UNIQUE REFERENCES ledger.account (id),
    created_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ledger.billing_user (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name              text NOT NULL UNIQUE CHECK (name ~ '^[a-z_][a-z0-9_.-]{0,63}$'),
    display_name      text NOT NULL DEFAULT '',
    wallet_account_id bigint NOT NULL UNIQUE REFERENCES ledger.account (id),
    project_id        bigint REFERENCES ledger.project (id),
    exempt            boolean NOT NULL DEFAULT FALSE,
    credit_limit      bigint CHECK (credit_limit >= 0),
    created_at        timestamptz NOT NULL DEFAULT now()
);

-- Which billing user a Linux account on a node is; node '*' applies to every node without its own row.
CREATE TABLE ledger.node_user_map (
    node       text NOT NULL CHECK (node <> ''),
    linux_user text NOT NULL CHECK (linux_user <> ''),
    user_id    bigint NOT NULL REFERENCES ledger.billing_user (id),
    PRIMARY KEY (node, linux_user)
);

CREATE TABLE ledger.price_version (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    resource      text NOT NULL CHECK (resource IN ('gpu', 'cpu', 'memory')),
    model_pattern text NOT NULL DEFAULT '',
    match         text NOT NULL CHECK (match IN ('exact', 'glob')),
    priority      integer NOT NULL DEFAULT 0,
    amount        numeric NOT NULL CHECK (amount >= 0),
    per           numeric NOT NULL CHECK (per > 0),
    unit          text NOT NULL,
    valid_from    timestamptz NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    actor         text NOT NULL,
    memo          text NOT NULL DEFAULT '',
    CHECK ((resource, unit) IN (('gpu', 'gpu-second'), ('cpu', 'core-second'), ('memory', 'GiB-second'))),
    CHECK ((resource = 'gpu') = (model_pattern <> ''))
);

CREATE TABLE ledger.usage (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    idem_key            text NOT NULL UNIQUE,
    payload_sha256      bytea NOT NULL CHECK (length(payload_sha256) = 32),
    node                text NOT NULL,
    linux_user          text NOT NULL,
    user_id             bigint NOT NULL,   -- references checked per statement (usage_refs)
    account_id          bigint NOT NULL,
    resource            text NOT NULL CHECK (resource IN ('gpu', 'cpu', 'memory')),
    model               text NOT NULL DEFAULT '',
    quantity            numeric NOT NULL CHECK (quantity >= 0),
    unit                text NOT NULL,
    interval_start      timestamptz NOT NULL,
    interval_end        timestamptz NOT NULL,
    method              text NOT NULL,
    evidence            jsonb NOT NULL DEFAULT '{}',
    epoch               text NOT NULL,
    price_version_id    bigint,
    cumulative_quantity numeric NOT NULL,
    amount              bigint NOT NULL CHECK (amount >= 0),
    recorded_at         timestamptz NOT NULL DEFAULT now(),
    CHECK (interval_end >= interval_start),
    CHECK (price_version_id IS NOT NULL OR amount = 0)
);
CREATE INDEX usage_epoch ON ledger.usage (epoch, price_version_id, id DESC) INCLUDE (cumulative_quantity);
CREATE INDEX usage_interval_end ON ledger.usage (interval_end);

CREATE TABLE ledger.journal_entry (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    idem_key       text NOT NULL CONSTRAINT journal_entry_idem_key UNIQUE,
    payload_sha256 bytea NOT NULL CHECK (length(payload_sha256) = 32),
    kind           text NOT NULL
                   CHECK (kind IN ('usage', 'recharge', 'grant', 'grant_expiry', 'adjustment', 'refund', 'reversal')),
    effective_at   timestamptz NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    ref_entry_id   bigint,          -- references checked per statement (journal_entry_refs)
    usage_id       bigint UNIQUE,
    actor          text NOT NULL CHECK (actor <> ''),
    memo           text NOT NULL DEFAULT '',
    request_id     text,
    CHECK ((kind IN ('reversal', 'refund', 'grant_expiry')) = (ref_entry_id IS NOT NULL)),
    CHECK ((kind = 'usage') = (usage_id IS NOT NULL))
);
CREATE UNIQUE INDEX journal_entry_one_reversal ON ledger.journal_entry (ref_entry_id) WHERE kind = 'reversal';
CREATE UNIQUE INDEX journal_entry_one_expiry ON ledger.journal_entry (ref_entry_id) WHERE kind = 'grant_expiry';
CREATE INDEX journal_entry_ref ON ledger.journal_entry (ref_entry_id) WHERE ref_entry_id IS NOT NULL;
CREATE INDEX journal_entry_effective_at ON ledger.journal_entry (effective_at);

-- One grant's money lives in its own sub-account of the wallet, which may never go below zero.
CREATE TABLE ledger.grant_account (
    entry_id          bigint PRIMARY KEY REFERENCES ledger.journal_entry (id),
    account_id        bigint NOT NULL UNIQUE REFERENCES ledger.account (id),
    wallet_account_id bigint NOT NULL REFERENCES ledger.account (id),
    expires_at        timestamptz
);
CREATE INDEX grant_account_wallet ON ledger.grant_account (wallet_account_id);

CREATE TABLE ledger.posting (
    entry_id     bigint NOT NULL,   -- references checked per statement (apply_postings)
    line         smallint NOT NULL CHECK (line >= 1),
    account_id   bigint NOT NULL,
    amount       bigint NOT NULL CHECK (amount <> 0),   -- micro-units; debit > 0, credit < 0
    -- a copy of the entry's effective_at (checked per statement) so statements and period balances are
    -- index-only scans of one table
    effective_at timestamptz NOT NULL,
    PRIMARY KEY (entry_id, line)
);
CREATE INDEX posting_account ON ledger.posting (account_id, effective_at) INCLUDE (amount, entry_id);

CREATE TABLE ledger.account_balance (
    account_id    bigint PRIMARY KEY REFERENCES ledger.account (id),
    debits        numeric NOT NULL DEFAULT 0 CHECK (debits >= 0),
    credits       numeric NOT NULL DEFAULT 0 CHECK (credits >= 0),
    last_entry_id bigint NOT NULL DEFAULT 0
);

CREATE TABLE ledger.chain_block (
    seq            bigint PRIMARY KEY,
    first_entry_id bigint NOT NULL,
    last_entry_id  bigint NOT NULL,
    entry_count    integer NOT NULL CHECK (entry_count > 0),
    prev_hash      bytea NOT NULL,
    block_hash     bytea NOT NULL UNIQUE,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CHECK (first_entry_id <= last_entry_id)
);

CREATE TABLE ledger.admin_audit (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    actor      text NOT NULL CHECK (actor <> ''),
    action     text NOT NULL,
    target     text NOT NULL,
    before     jsonb,
    after      jsonb,
    request_id text
);

CREATE TABLE ledger.idempotency_conflict (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at               timestamptz NOT NULL DEFAULT now(),
    idem_key         text NOT NULL,
    existing_sha256  bytea NOT NULL,
    attempted_sha256 bytea NOT NULL,
    actor            text NOT NULL
);

-- I1: balanced at COMMIT, per entry (an entry with no postings included). Postings added to an entry in a
-- later transaction are refused per statement in apply_postings below, so every entry is checked with all
-- of its postings exactly once. Ledger writes use no savepoints (the check compares top-level xids).
CREATE FUNCTION ledger.entry_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE s numeric; n int;
BEGIN
    SELECT coalesce(sum(amount), 0), count(*) INTO s, n FROM ledger.posting WHERE entry_id = NEW.id;
    IF n < 2 OR s <> 0 THEN
        RAISE EXCEPTION 'journal entry % is unbalanced: % postings summing to %', NEW.id, n, s
            USING ERRCODE = '23514';
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER journal_entry_balanced AFTER INSERT ON ledger.journal_entry
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger.entry_balanced();

-- I2: append-only for everyone.
CREATE FUNCTION ledger.forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% on %.% is forbidden: the ledger is append-only (correct with a new entry)',
        TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME USING ERRCODE = '42501';
END $$;

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['account', 'price_version', 'usage', 'journal_entry', 'grant_account', 'posting',
                             'chain_block', 'admin_audit', 'idempotency_conflict'] LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON ledger.%I
                        FOR EACH ROW EXECUTE FUNCTION ledger.forbid_change()', t || '_append_only', t);
        EXECUTE format('ALTER TABLE ledger.%I ENABLE ALWAYS TRIGGER %I', t, t || '_append_only');
    END LOOP;
    -- users and projects are changed (exemption, limits, assignment) but never deleted: wallets hang off them
    FOREACH t IN ARRAY ARRAY['billing_user', 'project'] LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE DELETE ON ledger.%I
                        FOR EACH ROW EXECUTE FUNCTION ledger.forbid_change()', t || '_no_delete', t);
        EXECUTE format('ALTER TABLE ledger.%I ENABLE ALWAYS TRIGGER %I', t, t || '_no_delete');
    END LOOP;
    FOREACH t IN ARRAY ARRAY['account', 'price_version', 'usage', 'journal_entry', 'grant_account', 'posting',
                             'chain_block', 'admin_audit', 'idempotency_conflict', 'account_balance',
                             'billing_user', 'project', 'node_user_map'] LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON ledger.%I
                        FOR EACH STATEMENT EXECUTE FUNCTION ledger.forbid_change()', t || '_no_truncate', t);
        EXECUTE format('ALTER TABLE ledger.%I ENABLE ALWAYS TRIGGER %I', t, t || '_no_truncate');
    END LOOP;
END $$;
ALTER TABLE ledger.journal_entry ENABLE ALWAYS TRIGGER journal_entry_balanced;

-- I3: one writer at a time. The key is ledger.db.WRITER_LOCK (small, so classid = 0 and objid = key).
CREATE FUNCTION ledger.require_writer_lock() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()
                   AND classid = 0 AND objid = 1735420007 AND objsubid = 1 AND granted) THEN
        RAISE EXCEPTION 'ledger writes require pg_advisory_xact_lock(1735420007)' USING ERRCODE = '55P03';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER journal_entry_writer_lock BEFORE INSERT ON ledger.journal_entry
    FOR EACH STATEMENT EXECUTE FUNCTION ledger.require_writer_lock();
CREATE TRIGGER usage_writer_lock BEFORE INSERT ON ledger.usage
    FOR EACH STATEMENT EXECUTE FUNCTION ledger.require_writer_lock();
ALTER TABLE ledger.journal_entry ENABLE ALWAYS TRIGGER journal_entry_writer_lock;
ALTER TABLE ledger.usage ENABLE ALWAYS TRIGGER usage_writer_lock;

-- I1 (late postings) + I4 + I7: per statement, from the transition table. Postings may only be added to entries
-- created in the same transaction, must carry their entry's effective_at, and update the balance cache.
-- enable_seqscan = off: every lookup here is by key, but the planner guesses a third of a table for an
-- unknown range or transition table and would scan the whole ledger once per transaction.
CREATE FUNCTION ledger.apply_postings() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = ledger, pg_temp SET enable_seqscan = off SET jit = off AS $$
BEGIN
    -- account_id needs no check here: the balance cache below has a foreign key to account
    IF EXISTS (SELECT 1 FROM new_rows n LEFT JOIN ledger.journal_entry e ON e.id = n.entry_id
               WHERE e.id IS NULL
                  OR e.xmin::text <> mod(pg_current_xact_id()::text::bigint, 4294967296)::text
                  OR e.effective_at <> n.effective_at) THEN
        RAISE EXCEPTION 'postings must be written with their entry, in its transaction, with its effective_at'
            USING ERRCODE = '23514';
    END IF;
    INSERT INTO ledger.account_balance AS b (account_id, debits, credits, last_entry_id)
    SELECT account_id, coalesce(sum(amount) FILTER (WHERE amount > 0), 0),
           coalesce(-sum(amount) FILTER (WHERE amount < 0), 0), max(entry_id)
      FROM new_rows GROUP BY account_id ORDER BY account_id
    ON CONFLICT (account_id) DO UPDATE
       SET debits = b.debits + excluded.debits, credits = b.credits + excluded.credits,
           last_entry_id = greatest(b.last_entry_id, excluded.last_entry_id);
    IF EXISTS (SELECT 1 FROM ledger.account_balance b JOIN ledger.account a ON a.id = b.account_id
               WHERE b.account_id IN (SELECT account_id FROM new_rows)
                 AND ((a.debits_must_not_exceed_credits AND b.debits > b.credits)
                   OR (a.credits_must_not_exceed_debits AND b.credits > b.debits))) THEN
        RAISE EXCEPTION 'account balance limit violated (exceeds_credits/exceeds_debits)' USING ERRCODE = '23514';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER posting_apply AFTER INSERT ON ledger.posting
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ledger.apply_postings();
ALTER TABLE ledger.posting ENABLE ALWAYS TRIGGER posting_apply;

-- I7: the other references of usage rows and journal entries, per statement.
CREATE FUNCTION ledger.usage_refs() RETURNS trigger LANGUAGE plpgsql
SET enable_seqscan = off SET jit = off AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM new_rows n
               WHERE NOT EXISTS (SELECT 1 FROM ledger.billing_user b WHERE b.id = n.user_id)
                  OR NOT EXISTS (SELECT 1 FROM ledger.account a WHERE a.id = n.account_id)
                  OR (n.price_version_id IS NOT NULL
                      AND NOT EXISTS (SELECT 1 FROM ledger.price_version v WHERE v.id = n.price_version_id))) THEN
        RAISE EXCEPTION 'usage row refers to a missing user, account or price version' USING ERRCODE = '23503';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER usage_refs AFTER INSERT ON ledger.usage
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ledger.usage_refs();
ALTER TABLE ledger.usage ENABLE ALWAYS TRIGGER usage_refs;

CREATE FUNCTION ledger.journal_entry_refs() RETURNS trigger LANGUAGE plpgsql
SET enable_seqscan = off SET jit = off AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM new_rows n
               WHERE (n.usage_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM ledger.usage u WHERE u.id = n.usage_id))
                  OR (n.ref_entry_id IS NOT NULL
                      AND NOT EXISTS (SELECT 1 FROM ledger.journal_entry e WHERE e.id = n.ref_entry_id))) THEN
        RAISE EXCEPTION 'journal entry refers to a missing usage row or entry' USING ERRCODE = '23503';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER journal_entry_refs AFTER INSERT ON ledger.journal_entry
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ledger.journal_entry_refs();
ALTER TABLE ledger.journal_entry ENABLE ALWAYS TRIGGER journal_entry_refs;

-- I5: canonical text of an entry (ledger.chain in Python is the independent re-implementation). Each field
-- is length-prefixed so no separator inside a value can make two different entries read the same.
-- Both are declared no stricter than their bodies (to_char is STABLE), or PostgreSQL would not inline them
-- and would run a function call per field per entry.
CREATE FUNCTION ledger.field(v text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN v IS NULL THEN '~' ELSE length(v)::text || ':' || v END $$;

CREATE FUNCTION ledger.utc(t timestamptz) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') $$;

-- Key lookups only (see apply_postings); jit = off: a handful of rows never repays JIT compilation.
CREATE FUNCTION ledger.seal_block() RETURNS bytea LANGUAGE plpgsql SECURITY DEFINER
SET search_path = ledger, pg_temp SET enable_seqscan = off SET jit = off AS $$
DECLARE prev ledger.chain_block; lo bigint; hi bigint; n int; body text; h bytea;
BEGIN
    PERFORM pg_advisory_xact_lock(1735420007);
    SELECT * INTO prev FROM ledger.chain_block ORDER BY seq DESC LIMIT 1;
    SELECT min(x.id), max(x.id), count(*), string_agg(x.c, E'\n' ORDER BY x.id) INTO lo, hi, n, body FROM (
        SELECT e.id, concat_ws('|', ledger.field(e.id::text), ledger.field(e.idem_key),
                   ledger.field(encode(e.payload_sha256, 'hex')), ledger.field(e.kind),
                   ledger.field(ledger.utc(e.effective_at)), ledger.field(ledger.utc(e.recorded_at)),
                   ledger.field(e.ref_entry_id::text), ledger.field(e.usage_id::text), ledger.field(e.actor),
                   ledger.field(e.memo),
                   coalesce((SELECT concat_ws('|', ledger.field(encode(u.payload_sha256, 'hex')),
                                     ledger.field(u.price_version_id::text), ledger.field(u.cumulative_quantity::text),
                                     ledger.field(u.amount::text), ledger.field(u.account_id::text))
                               FROM ledger.usage u WHERE u.id = e.usage_id), '~|~|~|~|~'),
                   (SELECT string_agg(ledger.field(p.line::text) || ledger.field(a.code) || ledger.field(p.amount::text),
                                      ';' ORDER BY p.line)
                      FROM ledger.posting p JOIN ledger.account a ON a.id = p.account_id WHERE p.entry_id = e.id)) AS c
          FROM ledger.journal_entry e
         WHERE e.id > coalesce(prev.last_entry_id, 0)) x;
    IF n = 0 THEN
        RETURN prev.block_hash;
    END IF;
    h := sha256(coalesce(prev.block_hash, '\x00'::bytea) || convert_to(body, 'UTF8'));
    INSERT INTO ledger.chain_block (seq, first_entry_id, last_entry_id, entry_count, prev_hash, block_hash)
    VALUES (coalesce(prev.seq, 0) + 1, lo, hi, n, coalesce(prev.block_hash, '\x00'::bytea), h);
    RETURN h;
END $$;

REVOKE ALL ON ALL TABLES IN SCHEMA ledger FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA ledger FROM PUBLIC;
GRANT SELECT ON ALL TABLES IN SCHEMA ledger TO gpuledger_app, gpuledger_auditor;
-- recorded_at is never granted: it is the database's clock, always.
GRANT INSERT ON ledger.account, ledger.project, ledger.billing_user, ledger.node_user_map, ledger.price_version,
                ledger.grant_account, ledger.posting, ledger.admin_audit, ledger.idempotency_conflict
    TO gpuledger_app;
GRANT INSERT (idem_key, payload_sha256, kind, effective_at, ref_entry_id, usage_id, actor, memo, request_id)
    ON ledger.journal_entry TO gpuledger_app;
GRANT INSERT (idem_key, payload_sha256, node, linux_user, user_id, account_id, resource, model, quantity, unit,
              interval_start, interval_end, method, evidence, epoch, price_version_id, cumulative_quantity, amount)
    ON ledger.usage TO gpuledger_app;
-- The operational tables: what an admin may change, each change with an admin_audit row.
GRANT UPDATE (display_name, project_id, exempt, credit_limit) ON ledger.billing_user TO gpuledger_app;
GRANT UPDATE (display_name) ON ledger.project TO gpuledger_app;
GRANT UPDATE (user_id), DELETE ON ledger.node_user_map TO gpuledger_app;
GRANT EXECUTE ON FUNCTION ledger.seal_block() TO gpuledger_app;
GRANT EXECUTE ON FUNCTION ledger.field(text), ledger.utc(timestamptz) TO gpuledger_app, gpuledger_auditor;
