-- The hourly usage rollup (issue #14 item 6). Runs as gpuledger_owner.
--   * ledger.usage_hourly: per UTC hour of interval_end and (billing user, wallet, node, GPU model ('' for cpu
--     and memory), resource, unit): quantity, amount (micro-units, like ledger.usage.amount) and how many usage
--     rows. It is the usage report (ledger.reports.usage: usage rows by interval_end) summed by hour, so for an
--     hour-aligned period the two agree to the last unit. Refunds and reversals are journal entries that do not
--     touch ledger.usage; the usage report does not count them, so neither does the rollup (they show in the
--     revenue report and in statements).
--   * It is derived data, not the ledger: the app role only reads it. It is written by the statement trigger
--     below (SECURITY DEFINER) in the transaction that inserts the usage rows, so only rows actually inserted
--     count: a replayed sample inserts nothing (the usage key is unique) and adds nothing; a rolled-back tick
--     rolls its rollup rows back with it. Every usage insert holds the writer lock (I3), so the upserts of two
--     ticks never interleave.
--   * ledger.rebuild_usage_hourly(lo, hi) recomputes hours [lo, hi) (NULL: unbounded) from ledger.usage under the
--     writer lock; `audit verify` compares the table with the same recomputation (ledger.verify).

CREATE TABLE ledger.usage_hourly (
    hour       timestamptz NOT NULL CHECK (hour = date_trunc('hour', hour, 'UTC')),
    user_id    bigint NOT NULL,
    account_id bigint NOT NULL,   -- the wallet charged, as ledger.usage.account_id
    node       text NOT NULL,
    model      text NOT NULL,
    resource   text NOT NULL,
    unit       text NOT NULL,
    quantity   numeric NOT NULL,
    amount     bigint NOT NULL,
    records    bigint NOT NULL CHECK (records > 0),
    PRIMARY KEY (hour, user_id, account_id, node, model, resource, unit)
);
-- one user's pages (their usage over a week)
CREATE INDEX usage_hourly_user ON ledger.usage_hourly (user_id, hour);

COMMENT ON TABLE ledger.usage_hourly IS
'Usage rows summed per UTC hour of interval_end and (user, wallet, node, model, resource, unit); kept by the'
' trigger usage_rollup, rebuilt by ledger.rebuild_usage_hourly(lo, hi), checked by audit verify.';

-- The one definition of the rollup's grouping: the trigger and the rebuild both call it (on new rows and on the
-- ledger's rows), and ledger.verify compares the table with it.
CREATE FUNCTION ledger.usage_hourly_of(lo timestamptz, hi timestamptz)
RETURNS SETOF ledger.usage_hourly LANGUAGE sql STABLE AS $$
    SELECT date_trunc('hour', u.interval_end, 'UTC'), u.user_id, u.account_id, u.node, u.model, u.resource, u.unit,
           sum(u.quantity), sum(u.amount)::bigint, count(*)
      FROM ledger.usage u
     WHERE (lo IS NULL OR u.interval_end >= lo) AND (hi IS NULL OR u.interval_end < hi)
     GROUP BY 1, 2, 3, 4, 5, 6, 7
$$;

CREATE FUNCTION ledger.rollup_usage() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = ledger, pg_temp SET jit = off AS $$
BEGIN
    INSERT INTO ledger.usage_hourly AS h (hour, user_id, account_id, node, model, resource, unit, quantity, amount,
                                          records)
    SELECT date_trunc('hour', n.interval_end, 'UTC'), n.user_id, n.account_id, n.node, n.model, n.resource, n.unit,
           sum(n.quantity), sum(n.amount), count(*)
      FROM new_rows n
     GROUP BY 1, 2, 3, 4, 5, 6, 7
    ON CONFLICT (hour, user_id, account_id, node, model, resource, unit) DO UPDATE
       SET quantity = h.quantity + excluded.quantity, amount = h.amount + excluded.amount,
           records = h.records + excluded.records;
    RETURN NULL;
END $$;

CREATE TRIGGER usage_rollup AFTER INSERT ON ledger.usage
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ledger.rollup_usage();
ALTER TABLE ledger.usage ENABLE ALWAYS TRIGGER usage_rollup;

CREATE FUNCTION ledger.rebuild_usage_hourly(lo timestamptz, hi timestamptz) RETURNS bigint LANGUAGE plpgsql
SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
DECLARE n bigint;
BEGIN
    IF lo <> date_trunc('hour', lo, 'UTC') OR hi <> date_trunc('hour', hi, 'UTC') THEN
        RAISE EXCEPTION 'the rollup is rebuilt in whole hours: % to % is not hour-aligned', lo, hi
            USING ERRCODE = '22023';
    END IF;
    -- the writer lock: no tick inserts usage (and so no trigger adds to the table) until this commits
    PERFORM ledger.writer_lock();
    DELETE FROM ledger.usage_hourly WHERE (lo IS NULL OR hour >= lo) AND (hi IS NULL OR hour < hi);
    INSERT INTO ledger.usage_hourly SELECT * FROM ledger.usage_hourly_of(lo, hi);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

COMMENT ON FUNCTION ledger.rebuild_usage_hourly(timestamptz, timestamptz) IS
'Recomputes ledger.usage_hourly for the hours [lo, hi) (NULL: unbounded) from ledger.usage, under the writer'
' lock; returns the rows written.';

REVOKE ALL ON FUNCTION ledger.usage_hourly_of(timestamptz, timestamptz), ledger.rollup_usage(),
    ledger.rebuild_usage_hourly(timestamptz, timestamptz) FROM PUBLIC;
GRANT SELECT ON ledger.usage_hourly TO gpuledger_app, gpuledger_auditor;
GRANT EXECUTE ON FUNCTION ledger.usage_hourly_of(timestamptz, timestamptz) TO gpuledger_app, gpuledger_auditor;
GRANT EXECUTE ON FUNCTION ledger.rebuild_usage_hourly(timestamptz, timestamptz) TO gpuledger_app;

-- the usage recorded before this migration
SELECT ledger.rebuild_usage_hourly(NULL, NULL);
