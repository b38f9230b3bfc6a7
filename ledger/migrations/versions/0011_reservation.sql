-- The reservation charge (issue #15 item 7; docs/queue.md, "Money"). Runs as gpuledger_owner.
--   * ``reservation`` (a granted GPU held and not used, in gpu-seconds) joins the resources of the price book and
--     of usage rows; like ``gpu`` it is priced by a model pattern. The widened checks hold for every existing row.
--   * post_usage is 0006's with one more document key, ``memo``, written into the entry (the memo is no part of
--     the payload hash; the chain seals it as it seals every entry's): a reservation charge's entry says
--     ``reservation``. A client older than this migration sends no memo: its entries keep the empty memo.

ALTER TABLE ledger.price_version
    DROP CONSTRAINT price_version_resource_check,
    DROP CONSTRAINT price_version_check,
    DROP CONSTRAINT price_version_check1,
    ADD CONSTRAINT price_version_resource_check
        CHECK (resource IN ('gpu', 'cpu', 'memory', 'reservation')),
    ADD CONSTRAINT price_version_check
        CHECK ((resource = 'gpu' AND unit = 'gpu-second') OR (resource = 'cpu' AND unit = 'core-second')
               OR (resource = 'memory' AND unit = 'GiB-second') OR (resource = 'reservation' AND unit = 'gpu-second')),
    ADD CONSTRAINT price_version_check1 CHECK ((resource IN ('gpu', 'reservation')) = (model_pattern <> ''));

ALTER TABLE ledger.usage
    DROP CONSTRAINT usage_resource_check,
    ADD CONSTRAINT usage_resource_check CHECK (resource IN ('gpu', 'cpu', 'memory', 'reservation'));

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
                 entry_sha256 text, actor text, memo text)
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
      INSERT INTO ledger.journal_entry (idem_key, payload_sha256, kind, effective_at, usage_id, actor, memo)
      SELECT (doc->>'entry_key_prefix') || x.idem_key, decode(x.entry_sha256, 'hex'), 'usage', x.interval_end, u.id,
             x.actor, coalesce(x.memo, '')
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
'"actor", "memo" (the entry''s memo; absent: empty)}, ...], '
'"postings": [{"idem_key" (of its usage row), "line", "account_id", "amount"}, ...]}. '
'Returns [[usage key, usage id, entry id or null], ...], or NULL (nothing written) when a mark moved since the'
' client read: it then holds the writer lock, so a second read is current and its call succeeds.';
