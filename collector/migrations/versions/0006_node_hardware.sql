-- The registry's hardware facts (CPU, memory, disks, driver: the probe's "hardware" section at the last good
-- sample) published with the node, so the console's registry page can show them without reading the table.
-- Added at the end: CREATE OR REPLACE VIEW keeps the existing columns and their order.
CREATE OR REPLACE VIEW collector.node_status AS
SELECT name, address, port, region, remarks, listed, in_inventory, status, last_outcome, last_error,
       last_attempt_at, last_seen_at, machine_id, boot_id, hardware
  FROM collector.node;
