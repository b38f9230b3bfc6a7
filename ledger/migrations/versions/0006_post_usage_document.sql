-- One owner per rule (issue #13). Runs as gpuledger_owner.
--   * The writer lock (I3) is ledger.writer_lock(), and the check for it ledger.writer_lock_held(): the key
--     1735420007 (ledger.db.WRITER_LOCK) is written in these two functions only; every function that takes or
--     checks the lock is restated below to call them (bodies otherwise as in 0001 and 0005).
--   * ledger.billing_users(pairs) is the one rule for who a Linux user on a node bills to, used by the tick
--     path's read and the controller's decisions (ledger.directory.resolve).
--   * ledger.post_usage reads a document with readable keys (ledger.tickdoc.PostUsageDocument); its shape is
--     written out once, in the function's comment below.

-- I3. Small keys have classid = 0 and objid = key (and objsubid = 1 for a one-bigint key).
CREATE FUNCTION ledger.writer_lock() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(1735420007);
END $$;

-- plpgsql, not sql: the trigger check calls it twice a tick, and a SQL function's plan is made again on every
-- call while a plpgsql one is cached per session.
CREATE FUNCTION ledger.writer_lock_held() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    RETURN EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()
                      AND classid = 0 AND objid = 1735420007 AND objsubid = 1 AND granted);
END $$;

COMMENT ON FUNCTION ledger.writer_lock() IS
'The ledger''s single-writer lock (pg_advisory_xact_lock, held to the end of the transaction): every insert into'
' ledger.usage and ledger.journal_entry requires it (invariant I3).';
COMMENT ON FUNCTION ledger.writer_lock_held() IS
'Whether this transaction holds ledger.writer_lock().';

CREATE OR REPLACE FUNCTION ledger.require_writer_lock() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT ledger.writer_lock_held() THEN
        RAISE EXCEPTION 'ledger writes require the writer lock (SELECT ledger.writer_lock())' USING ERRCODE = '55P03';
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION ledger.seal_block() RETURNS bytea LANGUAGE plpgsql SECURITY DEFINER
SET search_path = ledger, pg_temp SET enable_seqscan = off SET jit = off AS $$
DECLARE prev ledger.chain_block; lo bigint; hi bigint; n int; body text; h bytea;
BEGIN
    PERFORM ledger.writer_lock();
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

CREATE OR REPLACE FUNCTION ledger.close_period(through date, tz text, closer text, why text) RETURNS ledger.period_close
LANGUAGE plpgsql SET search_path = ledger, pg_temp AS $$
DECLARE boundary timestamptz; prev ledger.period_close; head ledger.chain_block; made ledger.period_close;
        refusal text;
BEGIN
    PERFORM ledger.writer_lock();
    IF NOT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = tz) THEN
        refusal := format('unknown time zone %s', tz);
    ELSE
        boundary := (through + 1)::timestamp AT TIME ZONE tz;
        SELECT * INTO prev FROM ledger.period_close ORDER BY closed_before DESC LIMIT 1;
        IF boundary > now() THEN
            refusal := format('the day is not over yet (it ends at %s)', boundary);
        ELSIF prev.id IS NOT NULL AND boundary <= prev.closed_before THEN
            refusal := format('the ledger is already closed through %s (before %s); a close only moves forward',
                              prev.through_day, prev.closed_before);
        ELSIF coalesce(closer, '') = '' OR coalesce(why, '') = '' THEN
            refusal := 'a close needs an actor and a reason';
        END IF;
    END IF;
    IF refusal IS NOT NULL THEN
        RAISE EXCEPTION 'cannot close through %: %', through, refusal
            USING ERRCODE = 'GL002', DETAIL = jsonb_build_object('through', through, 'reason', refusal)::text;
    END IF;
    SELECT * INTO head FROM ledger.chain_block ORDER BY seq DESC LIMIT 1;
    INSERT INTO ledger.period_close (through_day, time_zone, closed_before, head_seq, head_sha256, actor, reason)
    VALUES (through, tz, boundary, head.seq, head.block_hash, closer, why) RETURNING * INTO made;
    INSERT INTO ledger.admin_audit (actor, action, target, before, after)
    VALUES (closer, 'period.close', 'ledger',
            CASE WHEN prev.id IS NULL THEN NULL
                 ELSE jsonb_build_object('through', prev.through_day, 'closed_before', prev.closed_before) END,
            jsonb_build_object('through', through, 'time_zone', tz, 'closed_before', boundary, 'reason', why,
                               'head_seq', head.seq, 'head_sha256', encode(head.block_hash, 'hex')));
    RETURN made;
END $$;

-- Who a Linux user on a node bills to: that node's mapping, else the '*' mapping, else the billing user of the
-- same name; the wallet is where their usage is charged (their project's when they are in one, else their own).
-- Pairs no billing user answers to are absent from the result. A SQL function, so the planner inlines it into
-- the calling query (the tick path's read is one statement).
-- pairs: [{"node": text, "linux_user": text}, ...]
CREATE FUNCTION ledger.billing_users(pairs jsonb)
RETURNS TABLE (node text, linux_user text, user_id bigint, user_name text, wallet_account_id bigint,
               wallet_code text)
LANGUAGE sql STABLE AS $$
    SELECT l.node, l.linux_user, bu.id, bu.name, w.id, w.code
      FROM jsonb_to_recordset(pairs) AS l(node text, linux_user text)
      LEFT JOIN LATERAL (SELECT m.user_id FROM ledger.node_user_map m
                          WHERE m.linux_user = l.linux_user AND m.node IN (l.node, '*')
                          ORDER BY m.node = '*' LIMIT 1) m ON true
      JOIN ledger.billing_user bu
        ON bu.id = coalesce(m.user_id, (SELECT b.id FROM ledger.billing_user b WHERE b.name = l.linux_user))
      LEFT JOIN ledger.project p ON p.id = bu.project_id
      JOIN ledger.account w ON w.id = coalesce(p.wallet_account_id, bu.wallet_account_id) $$;

-- The newest close's boundary: nothing may be dated before it (-infinity while no period is closed). Published
-- for the controller's outbox read, which stops retrying records a close has refused for good.
CREATE FUNCTION ledger.closed_before() RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT coalesce(max(c.closed_before), '-infinity') FROM ledger.period_close c $$;

-- 0005's post_usage, reading the document with readable keys (the document is described in the comment
-- below). A client older than this migration sends the two-letter keys and is refused (code and schema move
-- together): nothing of its document would be read right.
CREATE OR REPLACE FUNCTION ledger.post_usage(doc jsonb) RETURNS jsonb LANGUAGE plpgsql SET jit = off AS $$
DECLARE written jsonb;
BEGIN
    IF NOT (doc ? 'price_stamp' AND doc ? 'usage_mark' AND doc ? 'entry_mark' AND doc ? 'closed_before'
            AND doc ? 'entry_key_prefix') THEN
        RAISE EXCEPTION 'ledger.post_usage needs price_stamp, usage_mark, entry_mark, closed_before and'
                        ' entry_key_prefix (a client older than migration 0006?)' USING ERRCODE = '22023';
    END IF;
    PERFORM ledger.writer_lock();
    IF (SELECT coalesce(max(id), 0) FROM ledger.price_version) IS DISTINCT FROM (doc->>'price_stamp')::bigint
       OR (SELECT coalesce(max(id), 0) FROM ledger.usage) IS DISTINCT FROM (doc->>'usage_mark')::bigint
       OR (SELECT coalesce(max(id), 0) FROM ledger.journal_entry) IS DISTINCT FROM (doc->>'entry_mark')::bigint
       OR (SELECT max(closed_before) FROM ledger.period_close) IS DISTINCT FROM (doc->>'closed_before')::timestamptz THEN
        RETURN NULL;
    END IF;
    WITH x AS (
      SELECT * FROM jsonb_to_recordset(doc->'usage') AS x(idem_key text, payload_sha256 text, node text,
                 linux_user text, user_id bigint, account_id bigint, resource text, model text, quantity numeric,
                 unit text, interval_start timestamptz, interval_end timestamptz, method text, evidence jsonb,
                 epoch text, price_version_id bigint, cumulative_quantity numeric, amount bigint,
                 entry_sha256 text, actor text)
    ), u AS (
      INSERT INTO ledger.usage (idem_key, payload_sha256, node, linux_user, user_id, account_id, resource, model,
                                quantity, unit, interval_start, interval_end, method, evidence, epoch,
                                price_version_id, cumulative_quantity, amount)
      SELECT x.idem_key, decode(x.payload_sha256, 'hex'), x.node, x.linux_user, x.user_id, x.account_id, x.resource,
             x.model, x.quantity, x.unit, x.interval_start, x.interval_end, x.method, x.evidence, x.epoch,
             x.price_version_id, x.cumulative_quantity, x.amount
        FROM x
      RETURNING id, idem_key
    ), e AS (
      INSERT INTO ledger.journal_entry (idem_key, payload_sha256, kind, effective_at, usage_id, actor)
      SELECT (doc->>'entry_key_prefix') || x.idem_key, decode(x.entry_sha256, 'hex'), 'usage', x.interval_end, u.id,
             x.actor
        FROM x JOIN u ON u.idem_key = x.idem_key WHERE x.amount > 0
      RETURNING id, usage_id, effective_at
    ), p AS (
      INSERT INTO ledger.posting (entry_id, line, account_id, amount, effective_at)
      SELECT e.id, z.line, z.account_id, z.amount, e.effective_at
        FROM jsonb_to_recordset(doc->'postings') AS z(idem_key text, line int, account_id bigint, amount bigint)
        JOIN u ON u.idem_key = z.idem_key JOIN e ON e.usage_id = u.id
    )
    SELECT coalesce(jsonb_agg(jsonb_build_array(u.idem_key, u.id, e.id)), '[]') INTO written
      FROM u LEFT JOIN e ON e.usage_id = u.id;
    PERFORM ledger.seal_block();
    RETURN written;
END $$;

COMMENT ON FUNCTION ledger.post_usage(jsonb) IS
'Writes a tick''s usage rows, their entries and postings under the writer lock, and seals the block.'
' doc (ledger.tickdoc.PostUsageDocument): {'
'"price_stamp": newest price version id the client rated with, '
'"usage_mark": newest ledger.usage id it read, "entry_mark": newest ledger.journal_entry id it read, '
'"closed_before": the newest period close it read (timestamptz text, or null), '
'"entry_key_prefix": prefix of each charged row''s entry key, '
'"usage": [{"idem_key", "payload_sha256" (hex), "node", "linux_user", "user_id", "account_id", "resource", '
'"model", "quantity", "unit", "interval_start", "interval_end", "method", "evidence" (object), "epoch", '
'"price_version_id", "cumulative_quantity", "amount", "entry_sha256" (hex; empty when amount is 0), '
'"actor"}, ...], '
'"postings": [{"idem_key" (of its usage row), "line", "account_id", "amount"}, ...]}. '
'Returns [[usage key, usage id, entry id or null], ...], or NULL (nothing written) when a mark moved since the'
' client read: it then holds the writer lock, so a second read is current and its call succeeds.';

REVOKE ALL ON FUNCTION ledger.writer_lock(), ledger.writer_lock_held(), ledger.billing_users(jsonb),
    ledger.closed_before() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledger.writer_lock(), ledger.writer_lock_held(), ledger.billing_users(jsonb),
    ledger.closed_before() TO gpuledger_app;
GRANT EXECUTE ON FUNCTION ledger.billing_users(jsonb), ledger.closed_before() TO gpuledger_auditor;
