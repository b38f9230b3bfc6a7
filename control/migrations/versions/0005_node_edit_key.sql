-- The key of the PATCH /v1/nodes/{name} (Idempotency-Key header) or console form that made an edit. NULL for
-- edits made without one (every edit before this migration). Unique: a second request with the same key
-- finds the first edit instead of appending another; the key is the client's, so it is namespaced by the
-- caller (api: / console-) like the ledger's entry keys.
ALTER TABLE control.node_edit ADD COLUMN idempotency_key text UNIQUE
    CHECK (idempotency_key IS NULL OR idempotency_key <> '');
