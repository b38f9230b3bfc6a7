-- One row per GPU and hour: sample counts by state (collector.nodes.gpuactivity says what the states mean).
CREATE TABLE collector.gpu_hourly (
    hour                timestamptz NOT NULL CHECK (date_trunc('hour', hour) = hour),
    node                text NOT NULL,
    uuid                text NOT NULL,
    model               text NOT NULL,
    samples             integer NOT NULL CHECK (samples > 0),
    utilization_samples integer NOT NULL CHECK (utilization_samples BETWEEN 0 AND samples),
    utilization_sum     bigint NOT NULL CHECK (utilization_sum >= 0),
    held_samples        integer NOT NULL CHECK (held_samples BETWEEN 0 AND samples),
    idle_held_samples   integer NOT NULL CHECK (idle_held_samples BETWEEN 0 AND held_samples),
    memory_used_max     bigint,
    holders             text[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (hour, node, uuid)
);
-- The console asks by time range first (overview charts), then by node (node page).
CREATE INDEX gpu_hourly_node_hour ON collector.gpu_hourly (node, hour);

GRANT SELECT, INSERT, UPDATE, DELETE ON collector.gpu_hourly TO gpuledger_app;
GRANT SELECT ON collector.gpu_hourly TO gpuledger_auditor;

-- Published (tests/test_tooling.py, COLLECTOR_PUBLISHED): the API's console reads GPU history only here.
CREATE VIEW collector.gpu_activity AS
SELECT hour, node, uuid, model, samples, utilization_samples, utilization_sum, held_samples, idle_held_samples,
       memory_used_max, holders
  FROM collector.gpu_hourly;

GRANT SELECT ON collector.gpu_activity TO gpuledger_app, gpuledger_auditor;
