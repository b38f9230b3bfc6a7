-- What the inventory said at the last sync, per admin field. The sync overwrites a field only when the
-- inventory's value changed since then, so an admin's edit (PATCH /v1/nodes/{name}) stands until ops edit
-- that same field in the inventory. Existing rows were last written by the sync, so they start equal.
ALTER TABLE collector.node
    ADD COLUMN inventory_region text,
    ADD COLUMN inventory_remarks text,
    ADD COLUMN inventory_listed boolean;
UPDATE collector.node SET inventory_region = region, inventory_remarks = remarks, inventory_listed = listed;
ALTER TABLE collector.node
    ALTER COLUMN inventory_region SET NOT NULL, ALTER COLUMN inventory_region SET DEFAULT '',
    ALTER COLUMN inventory_remarks SET NOT NULL, ALTER COLUMN inventory_remarks SET DEFAULT '',
    ALTER COLUMN inventory_listed SET NOT NULL, ALTER COLUMN inventory_listed SET DEFAULT TRUE;
