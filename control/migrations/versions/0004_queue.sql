-- One row per GPU request (control/queue/store.py). A request comes from a node's drop box (origin_node,
-- uid: the kernel's owner of the file; nonce: the body's, so a file read twice is one request) or from the
-- API (origin_node NULL). Once ended or refused a row never changes again (trigger below).
CREATE TABLE control.queue_request (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    billing_user  text NOT NULL,
    project       text,
    origin_node   text,
    uid           integer,
    nonce         text NOT NULL CHECK (nonce ~ '^[A-Za-z0-9_-]{16,64}$'),
    models        text[] NOT NULL,
    gpu_count     integer NOT NULL CHECK (gpu_count BETWEEN 1 AND 64),
    hours         numeric NOT NULL CHECK (hours > 0 AND hours <= 168),
    node          text,
    run           boolean NOT NULL DEFAULT FALSE,
    created_at    timestamptz NOT NULL,
    state         text NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'offered', 'granted', 'ended', 'refused')),
    offer_expires timestamptz,
    granted_at    timestamptz,
    ends          timestamptz,
    ended_at      timestamptz,
    boost_hours   integer NOT NULL DEFAULT 0,
    reason        text NOT NULL DEFAULT '',
    position      integer,
    eta           timestamptz,
    eta_basis     text NOT NULL DEFAULT '',
    CHECK ((state = 'granted') = (granted_at IS NOT NULL AND ends IS NOT NULL AND ended_at IS NULL)
           OR state = 'ended'),
    CHECK ((state IN ('ended', 'refused')) = (ended_at IS NOT NULL))
);
CREATE UNIQUE INDEX queue_request_nonce ON control.queue_request (billing_user, nonce);
CREATE INDEX queue_request_live ON control.queue_request (state) WHERE state IN ('queued', 'offered', 'granted');
CREATE INDEX queue_request_user ON control.queue_request (billing_user, id);

-- The GPUs of a request: held while queued, offered, granted. released_at set when that stops; a live row is
-- unique per GPU, so two requests can never hold, be offered or be granted the same GPU at once.
CREATE TABLE control.queue_gpu (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id   bigint NOT NULL REFERENCES control.queue_request (id),
    node         text NOT NULL,
    gpu_index    integer NOT NULL CHECK (gpu_index >= 0),
    model        text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('hold', 'offer', 'grant')),
    since        timestamptz NOT NULL,
    released_at  timestamptz,
    idle_since   timestamptz,
    idle_notices integer NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX queue_gpu_live ON control.queue_gpu (node, gpu_index) WHERE released_at IS NULL;
CREATE INDEX queue_gpu_request ON control.queue_gpu (request_id);

-- Past grants are immutable: an ended request, a released GPU row, stay as they were.
CREATE FUNCTION control.queue_request_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.state IN ('ended', 'refused') THEN
        RAISE EXCEPTION 'control.queue_request: request % has ended and cannot change', OLD.id;
    END IF;
    RETURN NEW;
END $$;
CREATE FUNCTION control.queue_gpu_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.released_at IS NOT NULL THEN
        RAISE EXCEPTION 'control.queue_gpu: row % was released and cannot change', OLD.id;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER queue_request_immutable BEFORE UPDATE ON control.queue_request
    FOR EACH ROW EXECUTE FUNCTION control.queue_request_immutable();
CREATE TRIGGER queue_gpu_immutable BEFORE UPDATE ON control.queue_gpu
    FOR EACH ROW EXECUTE FUNCTION control.queue_gpu_immutable();

GRANT SELECT, INSERT, UPDATE ON control.queue_request TO gpuledger_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON control.queue_gpu TO gpuledger_app;
GRANT SELECT ON control.queue_request, control.queue_gpu TO gpuledger_auditor;
