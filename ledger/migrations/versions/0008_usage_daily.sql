-- The daily level of the usage rollup (issue #14 item 6). Runs as gpuledger_owner.
--   * Why: a 90-day chart summed from ledger.usage_hourly reads about 110,000 hourly rows at a 24-node lab's
--     size (bench/console.py); the same from days reads about 1/24 of that.
--   * ledger.rollup_zone: the one zone the daily level is kept in (one row). A local day cannot be made of UTC
--     days, so the database must know the zone; it is the ledger's configured zone (LedgerConfig.timezone), written
--     by `gpuledger ledger rollup rebuild` (ledger.set_rollup_zone) and set here to the configuration's default.
--     A reader asking in another zone is answered from the hourly level (ledger.rollup): slower, never different,
--     so a mixed configuration cannot give wrong figures.
--   * ledger.usage_daily: ledger.usage_hourly summed per local day of each hour's start in that zone, same keys.
--     This is the hourly level's bucket rule (an hour goes to the local day it starts in), so a day of the daily
--     level is exactly the sum of the hours the hourly level puts in that local day, in every zone.
--   * Kept by the trigger usage_rollup (ledger.rollup_usage, replaced here) in the statement that inserts the
--     usage rows, under the writer lock like the hourly level; rebuilt by ledger.rebuild_usage_hourly (replaced
--     here: the local days its hours touch are recomputed whole from the rebuilt hours); `audit verify` compares
--     it with ledger.usage_daily_of (the one definition of its grouping).

CREATE TABLE ledger.rollup_zone (
    one  boolean PRIMARY KEY DEFAULT TRUE CHECK (one),
    zone text NOT NULL
);
INSERT INTO ledger.rollup_zone (zone) VALUES ('Asia/Shanghai');

CREATE TABLE ledger.usage_daily (
    day        date NOT NULL,
    user_id    bigint NOT NULL,
    account_id bigint NOT NULL,
    node       text NOT NULL,
    model      text NOT NULL,
    resource   text NOT NULL,
    unit       text NOT NULL,
    quantity   numeric NOT NULL,
    amount     bigint NOT NULL,
    records    bigint NOT NULL CHECK (records > 0),
    PRIMARY KEY (day, user_id, account_id, node, model, resource, unit)
);

COMMENT ON TABLE ledger.usage_daily IS
'ledger.usage_hourly summed per local day (of each hour''s start) in ledger.rollup_zone; kept by the trigger'
' usage_rollup, rebuilt with the hourly level, checked by audit verify.';

-- The hours [lo, hi) of local days (NULL: unbounded) summed per day in the rollup's zone. The bounds on hour are
-- a superset (a day is at most 26 hours away from its UTC date) that lets the hourly primary key narrow the scan.
CREATE FUNCTION ledger.usage_daily_of(lo date, hi date)
RETURNS SETOF ledger.usage_daily LANGUAGE sql STABLE AS $$
    SELECT (h.hour AT TIME ZONE z.zone)::date, h.user_id, h.account_id, h.node, h.model, h.resource, h.unit,
           sum(h.quantity), sum(h.amount)::bigint, sum(h.records)::bigint
      FROM ledger.usage_hourly h CROSS JOIN ledger.rollup_zone z
     WHERE (lo IS NULL OR (h.hour >= lo - interval '2 days' AND (h.hour AT TIME ZONE z.zone)::date >= lo))
       AND (hi IS NULL OR (h.hour < hi + interval '2 days' AND (h.hour AT TIME ZONE z.zone)::date < hi))
     GROUP BY 1, 2, 3, 4, 5, 6, 7
$$;

CREATE OR REPLACE FUNCTION ledger.rollup_usage() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = ledger, pg_temp SET jit = off AS $$
DECLARE z text := (SELECT zone FROM ledger.rollup_zone);
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
    INSERT INTO ledger.usage_daily AS d (day, user_id, account_id, node, model, resource, unit, quantity, amount,
                                         records)
    SELECT (date_trunc('hour', n.interval_end, 'UTC') AT TIME ZONE z)::date, n.user_id, n.account_id, n.node,
           n.model, n.resource, n.unit, sum(n.quantity), sum(n.amount), count(*)
      FROM new_rows n
     GROUP BY 1, 2, 3, 4, 5, 6, 7
    ON CONFLICT (day, user_id, account_id, node, model, resource, unit) DO UPDATE
       SET quantity = d.quantity + excluded.quantity, amount = d.amount + excluded.amount,
           records = d.records + excluded.records;
    RETURN NULL;
END $$;

-- Recomputes the daily level for the local days [lo, hi) (NULL: unbounded) from the hourly level; the caller holds
-- the writer lock.
CREATE FUNCTION ledger.rebuild_usage_daily(lo date, hi date) RETURNS bigint LANGUAGE plpgsql
SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
DECLARE n bigint;
BEGIN
    DELETE FROM ledger.usage_daily WHERE (lo IS NULL OR day >= lo) AND (hi IS NULL OR day < hi);
    INSERT INTO ledger.usage_daily SELECT * FROM ledger.usage_daily_of(lo, hi);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

CREATE OR REPLACE FUNCTION ledger.rebuild_usage_hourly(lo timestamptz, hi timestamptz) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
DECLARE n bigint; z text := (SELECT zone FROM ledger.rollup_zone);
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
    -- every local day an hour of [lo, hi) starts in, whole: its other hours are unchanged and summed again
    PERFORM ledger.rebuild_usage_daily((lo AT TIME ZONE z)::date, ((hi - interval '1 hour') AT TIME ZONE z)::date + 1);
    RETURN n;
END $$;

-- Moves the daily level to another zone: every day recomputed from the hours, under the writer lock.
CREATE FUNCTION ledger.set_rollup_zone(new_zone text) RETURNS boolean LANGUAGE plpgsql
SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = new_zone) THEN
        RAISE EXCEPTION 'unknown time zone %', new_zone USING ERRCODE = '22023';
    END IF;
    PERFORM ledger.writer_lock();
    IF new_zone = (SELECT zone FROM ledger.rollup_zone) THEN
        RETURN false;
    END IF;
    UPDATE ledger.rollup_zone SET zone = new_zone;
    PERFORM ledger.rebuild_usage_daily(NULL, NULL);
    RETURN true;
END $$;

REVOKE ALL ON FUNCTION ledger.usage_daily_of(date, date), ledger.rebuild_usage_daily(date, date),
    ledger.set_rollup_zone(text) FROM PUBLIC;
GRANT SELECT ON ledger.usage_daily, ledger.rollup_zone TO gpuledger_app, gpuledger_auditor;
GRANT EXECUTE ON FUNCTION ledger.usage_daily_of(date, date) TO gpuledger_app, gpuledger_auditor;
GRANT EXECUTE ON FUNCTION ledger.set_rollup_zone(text) TO gpuledger_app;

-- the usage recorded before this migration
SELECT ledger.rebuild_usage_daily(NULL, NULL);
