-- One row per ended idle spell of a granted GPU (docs/queue.md, "Idle-held GPUs"). queue_gpu.idle_since holds
-- only the spell in progress and the tick clears it when the GPU shows utilization; before this table that
-- spell was lost, so a GPU idle 50 minutes, busy 5, idle 50 counted 50. The tick that clears idle_since writes
-- [idle_since, its now) here in the same statement (control.queue.store.idle_update). A spell still open when
-- the grant ends is not copied: it ends at the GPU row's released_at, which queue_gpu keeps with idle_since.
-- A spell starts once per GPU of a request, hence the key: the same spell can never be counted twice.
CREATE TABLE control.queue_idle_spell (
    request_id bigint NOT NULL REFERENCES control.queue_request (id),
    node       text NOT NULL,
    gpu_index  integer NOT NULL CHECK (gpu_index >= 0),
    since      timestamptz NOT NULL,
    until      timestamptz NOT NULL,
    CHECK (until > since),
    PRIMARY KEY (request_id, node, gpu_index, since)
);
-- idle_hours' window (spells ending after its start and starting before its end): the spells of weeks gone by,
-- most of the table, are never read for this week's report.
CREATE INDEX queue_idle_spell_until ON control.queue_idle_spell (until);

-- A spell is a fact once written: the app may add spells, never change or remove one.
GRANT SELECT, INSERT ON control.queue_idle_spell TO gpuledger_app;
GRANT SELECT ON control.queue_idle_spell TO gpuledger_auditor;
