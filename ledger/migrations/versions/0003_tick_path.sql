-- The tick path in one call, and one balance check per transaction (issue #2). Runs as gpuledger_owner.
--   I1 is now checked once per transaction instead of once per entry: a statement that inserts entries or
--      postings queues a marker row for its transaction (balance_check), and a deferred constraint trigger on
--      that row checks every entry the transaction wrote, with one GROUP BY, at COMMIT.
--   ledger.post_usage(doc) takes the writer lock as late as it can, re-checks under the lock what the client
--      rated against (price book, epochs, grants, keys), and inserts usage rows, entries and postings and
--      seals the block in one statement; NULL means "something changed since your read: read again".

-- I1. The marker lives from the first entry or posting statement of a transaction to its COMMIT; the deferred
-- check deletes it, so the table is empty between transactions. Only the owner's functions touch it.
CREATE TABLE ledger.balance_check (
    xact           xid8 PRIMARY KEY,
    first_entry_id bigint NOT NULL
);
REVOKE ALL ON ledger.balance_check FROM PUBLIC;

-- Postings queue a check too: after SET CONSTRAINTS ... IMMEDIATE has run (and removed) the check, postings may
-- still be added to the transaction's earlier entries, and those must be checked again at COMMIT.
CREATE FUNCTION ledger.queue_balance_check() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = ledger, pg_temp AS $$
DECLARE first bigint;
BEGIN
    IF TG_TABLE_NAME = 'journal_entry' THEN
        SELECT min(id) INTO first FROM new_rows;
    ELSE
        SELECT min(entry_id) INTO first FROM new_rows;
    END IF;
    IF first IS NOT NULL THEN
        INSERT INTO ledger.balance_check AS c (xact, first_entry_id) VALUES (pg_current_xact_id(), first)
        ON CONFLICT (xact) DO UPDATE SET first_entry_id = excluded.first_entry_id
            WHERE excluded.first_entry_id < c.first_entry_id;
    END IF;
    RETURN NULL;
END $$;

-- Entries are ids >= the marker's first written by this transaction (its xmin; ledger writes use no
-- savepoints). The writer lock keeps other writers out, so that range is short and contiguous.
CREATE FUNCTION ledger.entries_balanced() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = ledger, pg_temp SET enable_seqscan = off SET jit = off AS $$
DECLARE bad record;
BEGIN
    SELECT e.id, count(p.entry_id) AS n, coalesce(sum(p.amount), 0) AS s INTO bad
      FROM ledger.journal_entry e LEFT JOIN ledger.posting p ON p.entry_id = e.id
     WHERE e.id >= NEW.first_entry_id
       AND e.xmin::text = mod(pg_current_xact_id()::text::bigint, 4294967296)::text
     GROUP BY e.id
    HAVING count(p.entry_id) < 2 OR coalesce(sum(p.amount), 0) <> 0
     ORDER BY e.id LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'journal entry % is unbalanced: % postings summing to %', bad.id, bad.n, bad.s
            USING ERRCODE = '23514';
    END IF;
    DELETE FROM ledger.balance_check WHERE xact = NEW.xact;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER balance_check_entries AFTER INSERT ON ledger.balance_check
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger.entries_balanced();
CREATE TRIGGER journal_entry_queue_balance_check AFTER INSERT ON ledger.journal_entry
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ledger.queue_balance_check();
CREATE TRIGGER posting_queue_balance_check AFTER INSERT ON ledger.posting
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ledger.queue_balance_check();
ALTER TABLE ledger.balance_check ENABLE ALWAYS TRIGGER balance_check_entries;
ALTER TABLE ledger.journal_entry ENABLE ALWAYS TRIGGER journal_entry_queue_balance_check;
ALTER TABLE ledger.posting ENABLE ALWAYS TRIGGER posting_queue_balance_check;
CREATE TRIGGER balance_check_no_truncate BEFORE TRUNCATE ON ledger.balance_check
    FOR EACH STATEMENT EXECUTE FUNCTION ledger.forbid_change();
ALTER TABLE ledger.balance_check ENABLE ALWAYS TRIGGER balance_check_no_truncate;

DROP TRIGGER journal_entry_balanced ON ledger.journal_entry;
DROP FUNCTION ledger.entry_balanced();

-- What the tick path reads before the lock and ledger.post_usage re-checks under it: one definition each,
-- in plpgsql so that their plans are cached per session (a SQL function's are made again on every call).
-- pairs: [{"epoch", "pv"}] -> [[epoch, pv, newest cumulative quantity as text or null], ...] in pairs' order.
CREATE FUNCTION ledger.epoch_state(pairs jsonb) RETURNS jsonb LANGUAGE plpgsql STABLE
SET enable_seqscan = off SET jit = off AS $$
BEGIN
    RETURN (SELECT coalesce(jsonb_agg(jsonb_build_array(x.epoch, x.pv,
                              (SELECT u.cumulative_quantity::text FROM ledger.usage u
                                WHERE u.epoch = x.epoch AND u.price_version_id = x.pv ORDER BY u.id DESC LIMIT 1))
                              ORDER BY x.n), '[]')
              FROM ROWS FROM (jsonb_to_recordset(pairs) AS (epoch text, pv bigint)) WITH ORDINALITY AS x(epoch, pv, n));
END $$;

-- The wallets' grants with money left: {"<wallet account id>": [[account id, code, expires_at, remaining], ...]}
-- in spending order (earliest expiry first, then those without one); wallets without such grants are absent.
CREATE FUNCTION ledger.wallet_grants(wallet_account_ids bigint[]) RETURNS jsonb LANGUAGE plpgsql STABLE
SET enable_seqscan = off SET jit = off AS $$
BEGIN
    RETURN (SELECT coalesce(jsonb_object_agg(w.wallet, w.grants), '{}') FROM (
              SELECT g.wallet_account_id AS wallet,
                     jsonb_agg(jsonb_build_array(g.account_id, a.code, g.expires_at, b.credits - b.debits)
                               ORDER BY g.expires_at NULLS LAST, g.entry_id) AS grants
                FROM ledger.grant_account g
                JOIN ledger.account a ON a.id = g.account_id
                JOIN ledger.account_balance b ON b.account_id = g.account_id
               WHERE g.wallet_account_id = ANY (wallet_account_ids) AND b.credits > b.debits
               GROUP BY g.wallet_account_id) w);
END $$;

-- doc: {"stamp": newest price version id rated with, "prefix": entry key prefix,
--       "pairs": [{"epoch", "pv"}], "epochs": what ledger.epoch_state(pairs) gave the client to rate from,
--       "wallets": [wallet account ids], "grants": what ledger.wallet_grants(wallets) gave it to split from,
--       "usage": [usage rows], "postings": [{"k", "line", "acc", "amt"}]}
-- Returns [[usage key, usage id, entry id or null], ...], or NULL (nothing written) when what was read no
-- longer holds; the caller then holds the writer lock, so a second read is current and its call succeeds.
CREATE FUNCTION ledger.post_usage(doc jsonb) RETURNS jsonb LANGUAGE plpgsql SET jit = off AS $$
DECLARE written jsonb;
BEGIN
    PERFORM pg_advisory_xact_lock(1735420007);
    IF (SELECT coalesce(max(id), 0) FROM ledger.price_version) <> (doc->>'stamp')::bigint
       OR EXISTS (SELECT 1 FROM jsonb_array_elements(doc->'usage') r JOIN ledger.usage u ON u.idem_key = r->>'k')
       OR ledger.epoch_state(doc->'pairs') <> doc->'epochs'
       OR ledger.wallet_grants(ARRAY(SELECT jsonb_array_elements_text(doc->'wallets')::bigint)) <> doc->'grants' THEN
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

REVOKE ALL ON FUNCTION ledger.queue_balance_check(), ledger.entries_balanced(), ledger.epoch_state(jsonb),
    ledger.wallet_grants(bigint[]), ledger.post_usage(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledger.epoch_state(jsonb), ledger.wallet_grants(bigint[]), ledger.post_usage(jsonb)
    TO gpuledger_app;
