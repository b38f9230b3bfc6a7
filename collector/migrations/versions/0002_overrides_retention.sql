-- The admin override (api.enforcement_override, by id: the api chain may not exist) a decision followed.
ALTER TABLE collector.decision ADD COLUMN override_id bigint, ADD COLUMN override_reason text;
GRANT INSERT (override_id, override_reason) ON collector.decision TO gpuledger_app;

-- Retention. The app role may not delete decisions or ticks at will (the log is its own audit trail), so
-- it prunes only through this function, which removes only what is older than the retention and keeps the
-- latest quota and GPU verb of every (node, uid): the controller reads those to know whom it restricted,
-- so pruning can never make it forget to lift a restriction.
CREATE FUNCTION collector.prune_records(days integer)
RETURNS TABLE (decisions bigint, ticks bigint, unaccounted bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    horizon timestamptz;
BEGIN
    IF days IS NULL OR days < 1 THEN
        RAISE EXCEPTION 'retention must be at least 1 day, got %', days USING ERRCODE = '22023';
    END IF;
    horizon := now() - make_interval(days => days);
    DELETE FROM collector.decision d
     WHERE d.at < horizon
       AND d.id NOT IN (SELECT DISTINCT ON (k.node, k.uid, split_part(k.verb, '-', 1)) k.id
                          FROM collector.decision k
                         WHERE k.outcome IN ('applied', 'unchanged') AND k.uid IS NOT NULL
                           AND split_part(k.verb, ' ', 1) IN ('quota-set', 'quota-clear', 'gpu-block', 'gpu-unblock')
                         ORDER BY k.node, k.uid, split_part(k.verb, '-', 1), k.id DESC);
    GET DIAGNOSTICS decisions = ROW_COUNT;
    DELETE FROM collector.tick t
     WHERE t.started_at < horizon AND NOT EXISTS (SELECT 1 FROM collector.decision d WHERE d.tick_id = t.id);
    GET DIAGNOSTICS ticks = ROW_COUNT;
    DELETE FROM collector.unaccounted u WHERE u.recorded_at < horizon;
    GET DIAGNOSTICS unaccounted = ROW_COUNT;
    RETURN NEXT;
END
$$;
REVOKE ALL ON FUNCTION collector.prune_records(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION collector.prune_records(integer) TO gpuledger_app;
CREATE INDEX decision_tick ON collector.decision (tick_id);
