-- Period close (issue #12). Runs as gpuledger_owner.
--   I8 nothing is dated in a closed period: no journal entry with effective_at, and no usage row with
--      interval_end, before the newest close's closed_before, whoever inserts it (ENABLE ALWAYS). Postings
--      carry their entry's effective_at (apply_postings), so checking entries covers them.
--   I9 a close is the owner's act: ledger.close_period is not granted to the app role, and period_close is
--      append-only, so a close is never undone and a period never reopened.
-- Errors the Python side turns into typed errors (ledger.db.translated) carry their data as JSON in DETAIL:
--   GL001 period closed {"at", "closed_before"}, GL002 refused close {"through", "reason"}.

CREATE TABLE ledger.period_close (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    through_day   date NOT NULL,                  -- the last local day closed, as the admin named it
    time_zone     text NOT NULL,                  -- the zone of that day (GPULEDGER_TIMEZONE of the closer)
    closed_before timestamptz NOT NULL UNIQUE,    -- the instant the next day starts there
    -- the chain head when the period closed: what audit verify checks a closed period against
    head_seq      bigint,
    head_sha256   bytea,
    actor         text NOT NULL CHECK (actor <> ''),
    reason        text NOT NULL CHECK (reason <> ''),
    at            timestamptz NOT NULL DEFAULT now(),
    CHECK (closed_before <= at),
    CHECK ((head_seq IS NULL) = (head_sha256 IS NULL))
);
CREATE TRIGGER period_close_append_only BEFORE UPDATE OR DELETE ON ledger.period_close
    FOR EACH ROW EXECUTE FUNCTION ledger.forbid_change();
CREATE TRIGGER period_close_no_truncate BEFORE TRUNCATE ON ledger.period_close
    FOR EACH STATEMENT EXECUTE FUNCTION ledger.forbid_change();
ALTER TABLE ledger.period_close ENABLE ALWAYS TRIGGER period_close_append_only;
ALTER TABLE ledger.period_close ENABLE ALWAYS TRIGGER period_close_no_truncate;
REVOKE ALL ON ledger.period_close FROM PUBLIC;
GRANT SELECT ON ledger.period_close TO gpuledger_app, gpuledger_auditor;

-- I8, once per statement from the transition table (a tick inserts thousands of rows in one statement).
CREATE FUNCTION ledger.refuse_closed_period() RETURNS trigger LANGUAGE plpgsql SET jit = off AS $$
DECLARE closed timestamptz; earliest timestamptz;
BEGIN
    SELECT max(closed_before) INTO closed FROM ledger.period_close;
    IF closed IS NULL THEN
        RETURN NULL;
    END IF;
    IF TG_TABLE_NAME = 'journal_entry' THEN
        SELECT min(effective_at) INTO earliest FROM new_rows;
    ELSE
        SELECT min(interval_end) INTO earliest FROM new_rows;
    END IF;
    IF earliest < closed THEN
        RAISE EXCEPTION '% dated % is in a closed period (closed before %)', TG_TABLE_NAME, earliest, closed
            USING ERRCODE = 'GL001', DETAIL = jsonb_build_object('at', earliest, 'closed_before', closed)::text;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER journal_entry_open_period AFTER INSERT ON ledger.journal_entry
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_closed_period();
CREATE TRIGGER usage_open_period AFTER INSERT ON ledger.usage
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_closed_period();
ALTER TABLE ledger.journal_entry ENABLE ALWAYS TRIGGER journal_entry_open_period;
ALTER TABLE ledger.usage ENABLE ALWAYS TRIGGER usage_open_period;

-- I9. Under the writer lock: a ledger write in flight either commits before the close or sees it. A close
-- only moves forward and never past now (a day is closed once it is over); it records the chain head and its
-- own admin_audit row, so a close without its audit row cannot exist.
CREATE FUNCTION ledger.close_period(through date, tz text, closer text, why text) RETURNS ledger.period_close
LANGUAGE plpgsql SET search_path = ledger, pg_temp AS $$
DECLARE boundary timestamptz; prev ledger.period_close; head ledger.chain_block; made ledger.period_close;
        refusal text;
BEGIN
    PERFORM pg_advisory_xact_lock(1735420007);
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
REVOKE ALL ON FUNCTION ledger.refuse_closed_period(), ledger.close_period(date, text, text, text) FROM PUBLIC;

-- 0004's post_usage with the close as one more mark: the client rejects records dated before the close it
-- read (PeriodClosed) and sends that close back; a close committed since makes the call write nothing, like
-- any other mark, and the caller reads again under the lock. A client older than this migration sends no
-- close and is refused (code and schema move together).
CREATE OR REPLACE FUNCTION ledger.post_usage(doc jsonb) RETURNS jsonb LANGUAGE plpgsql SET jit = off AS $$
DECLARE written jsonb;
BEGIN
    IF NOT (doc ? 'stamp' AND doc ? 'usage_mark' AND doc ? 'entry_mark' AND doc ? 'closed_before') THEN
        RAISE EXCEPTION 'ledger.post_usage needs stamp, usage_mark, entry_mark and closed_before (a client older'
                        ' than migration 0005?)' USING ERRCODE = '22023';
    END IF;
    PERFORM pg_advisory_xact_lock(1735420007);
    IF (SELECT coalesce(max(id), 0) FROM ledger.price_version) IS DISTINCT FROM (doc->>'stamp')::bigint
       OR (SELECT coalesce(max(id), 0) FROM ledger.usage) IS DISTINCT FROM (doc->>'usage_mark')::bigint
       OR (SELECT coalesce(max(id), 0) FROM ledger.journal_entry) IS DISTINCT FROM (doc->>'entry_mark')::bigint
       OR (SELECT max(closed_before) FROM ledger.period_close) IS DISTINCT FROM (doc->>'closed_before')::timestamptz THEN
        RETURN NULL;
    END IF;
    WITH x AS (
      SELECT * FROM jsonb_to_recordset(doc->'usage') AS x(k text, h text, node text, lu text, uid bigint,
                 acc bigint, res text, model text, q numeric, unit text, t0 timestamptz, t1 timestamptz,
                 method text, ev jsonb, epoch text, pv bigint, cq numeric, amt bigint, eh text, actor text)
    ), u AS (
      INSERT INTO ledger.usage (idem_key, payload_sha256, node, linux_user, user_id, account_id, resource, model,
                                quantity, unit, interval_start, interval_end, method, evidence, epoch,
                                price_version_id, cumulative_quantity, amount)
      SELECT k, decode(h, 'hex'), node, lu, uid, acc, res, model, q, unit, t0, t1, method, ev, epoch, pv, cq, amt
        FROM x
      RETURNING id, idem_key
    ), e AS (
      INSERT INTO ledger.journal_entry (idem_key, payload_sha256, kind, effective_at, usage_id, actor)
      SELECT (doc->>'prefix') || x.k, decode(x.eh, 'hex'), 'usage', x.t1, u.id, x.actor
        FROM x JOIN u ON u.idem_key = x.k WHERE x.amt > 0
      RETURNING id, usage_id, effective_at
    ), p AS (
      INSERT INTO ledger.posting (entry_id, line, account_id, amount, effective_at)
      SELECT e.id, z.line, z.acc, z.amt, e.effective_at
        FROM jsonb_to_recordset(doc->'postings') AS z(k text, line int, acc bigint, amt bigint)
        JOIN u ON u.idem_key = z.k JOIN e ON e.usage_id = u.id
    )
    SELECT coalesce(jsonb_agg(jsonb_build_array(u.idem_key, u.id, e.id)), '[]') INTO written
      FROM u LEFT JOIN e ON e.usage_id = u.id;
    PERFORM ledger.seal_block();
    RETURN written;
END $$;
