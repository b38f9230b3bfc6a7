-- Runs as gpuledger_owner. NULL -> a time is a revocation; any change after that (back to NULL, or another
-- time) is refused, for everyone: ENABLE ALWAYS, like the ledger's append-only triggers.
CREATE FUNCTION api.revoked_at_write_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'api.token % was revoked at %: revoked_at is write-once', OLD.id, OLD.revoked_at
        USING ERRCODE = '42501';
END $$;

CREATE TRIGGER token_revoked_at_write_once BEFORE UPDATE OF revoked_at ON api.token FOR EACH ROW
    WHEN (OLD.revoked_at IS NOT NULL AND NEW.revoked_at IS DISTINCT FROM OLD.revoked_at)
    EXECUTE FUNCTION api.revoked_at_write_once();
ALTER TABLE api.token ENABLE ALWAYS TRIGGER token_revoked_at_write_once;
REVOKE ALL ON FUNCTION api.revoked_at_write_once() FROM PUBLIC;
