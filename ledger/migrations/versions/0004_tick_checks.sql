-- Cheaper checks on the tick path (issue #4). Runs as gpuledger_owner. Each of these grew with the ledger: the
-- key re-check in post_usage and the reference check of journal entries scanned all of ledger.usage (a hash
-- join, and a hashed subplan over usage_pkey), once per call.

-- Staleness by high-water marks. The client's read (ledger.usage._READ_SQL, the first statement of its
-- transaction) returns max(id) of ledger.usage and of ledger.journal_entry; if both are unchanged under the
-- writer lock, nothing the client read or rated from has moved:
--   * every insert into usage and journal_entry requires the writer lock (require_writer_lock), and postings
--     only go to entries of their own transaction (apply_postings), so all three are written under it;
--   * writers are serialised by that lock, held to COMMIT, and take their ids under it from sequences (no
--     cache), so a row committed after our read has a larger id than every row our read could see;
--   * an epoch's cumulative quantity changes only by a new usage row, a grant's balance (and every other
--     balance) only by postings, which come with a new entry; a key recorded since is a new usage row.
-- The price book is not written under the lock: its stamp is compared as before. A NULL when nothing
-- relevant moved (another user's usage, a recharge) is harmless: the caller reads again under the lock.
CREATE OR REPLACE FUNCTION ledger.post_usage(doc jsonb) RETURNS jsonb LANGUAGE plpgsql SET jit = off AS $$
DECLARE written jsonb;
BEGIN
    -- A client older than this migration sends no marks: a NULL in the comparison below would let its write
    -- through unchecked, so it is refused (its samples stay uncharged until the controller is upgraded).
    IF NOT (doc ? 'stamp' AND doc ? 'usage_mark' AND doc ? 'entry_mark') THEN
        RAISE EXCEPTION 'ledger.post_usage needs stamp, usage_mark and entry_mark (a client older than migration 0004?)'
            USING ERRCODE = '22023';
    END IF;
    PERFORM pg_advisory_xact_lock(1735420007);
    IF (SELECT coalesce(max(id), 0) FROM ledger.price_version) IS DISTINCT FROM (doc->>'stamp')::bigint
       OR (SELECT coalesce(max(id), 0) FROM ledger.usage) IS DISTINCT FROM (doc->>'usage_mark')::bigint
       OR (SELECT coalesce(max(id), 0) FROM ledger.journal_entry) IS DISTINCT FROM (doc->>'entry_mark')::bigint THEN
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

-- I7 per key. An OR of NOT EXISTS subplans cannot become an anti-join, so PostgreSQL hashed each referenced
-- table's whole primary key once per statement; one anti-join per reference looks up each new row's key.
-- Hash and merge joins are off for the same reason as seqscan: the planner guesses a transition table's size.
-- A tick's usage rows name a few users, wallets and price versions many times over: each is looked up once.
CREATE OR REPLACE FUNCTION ledger.usage_refs() RETURNS trigger LANGUAGE plpgsql
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off SET jit = off AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM (SELECT DISTINCT user_id FROM new_rows) n
                WHERE NOT EXISTS (SELECT 1 FROM ledger.billing_user b WHERE b.id = n.user_id))
       OR EXISTS (SELECT 1 FROM (SELECT DISTINCT account_id FROM new_rows) n
                   WHERE NOT EXISTS (SELECT 1 FROM ledger.account a WHERE a.id = n.account_id))
       OR EXISTS (SELECT 1 FROM (SELECT DISTINCT price_version_id FROM new_rows WHERE price_version_id IS NOT NULL) n
                   WHERE NOT EXISTS (SELECT 1 FROM ledger.price_version v WHERE v.id = n.price_version_id)) THEN
        RAISE EXCEPTION 'usage row refers to a missing user, account or price version' USING ERRCODE = '23503';
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION ledger.journal_entry_refs() RETURNS trigger LANGUAGE plpgsql
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off SET jit = off AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM new_rows n WHERE n.usage_id IS NOT NULL
                  AND NOT EXISTS (SELECT 1 FROM ledger.usage u WHERE u.id = n.usage_id))
       OR EXISTS (SELECT 1 FROM new_rows n WHERE n.ref_entry_id IS NOT NULL
                     AND NOT EXISTS (SELECT 1 FROM ledger.journal_entry e WHERE e.id = n.ref_entry_id)) THEN
        RAISE EXCEPTION 'journal entry refers to a missing usage row or entry' USING ERRCODE = '23503';
    END IF;
    RETURN NULL;
END $$;
