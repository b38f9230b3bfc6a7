-- The collector's published views: the only collector objects another package's SQL may name
-- (tests/test_tooling.py, COLLECTOR_PUBLISHED). Each lists its columns, so what is published is explicit.
-- Views run with their owner's rights: the readers need SELECT on the view only.

-- The registry: the inventory's view of each node plus what the last ticks learned (admin fields as applied:
-- an edit not yet applied is control's, control/nodes.py).
CREATE VIEW collector.node_status AS
SELECT name, address, port, region, remarks, listed, in_inventory, status, last_outcome, last_error,
       last_attempt_at, last_seen_at, machine_id, boot_id
  FROM collector.node;

-- Each node's GPUs as its latest sample reported them.
CREATE VIEW collector.gpu_status AS
SELECT node, uuid, index, name, memory_total_bytes, state, seen_at
  FROM collector.gpu;

-- Every enforcement decision with its outcome and the admin override it followed.
CREATE VIEW collector.decision_log AS
SELECT id, tick_id, at, node, uid, linux_user, billing_user, tier, balance, verb, reason, dry_run, outcome,
       exit_status, detail, finished_at, override_id, override_reason
  FROM collector.decision;

-- One row: when the newest tick started (NULL before the first), for health checks.
CREATE VIEW collector.tick_status AS
SELECT max(started_at) AS last_started_at
  FROM collector.tick;

GRANT SELECT ON collector.node_status, collector.gpu_status, collector.decision_log, collector.tick_status
    TO gpuledger_app, gpuledger_auditor;
