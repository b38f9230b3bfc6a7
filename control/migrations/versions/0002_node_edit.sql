-- One row per PATCH /v1/nodes/{name} that changed something: the fields it set (NULL: left alone), who and
-- when. The controller marks a row applied (applied_at) in the transaction of the inventory sync that wrote
-- it into its registry; until then the API lays pending rows over the registry it shows. Kept, like the
-- settings versions: the history of admin edits of the registry.
CREATE TABLE control.node_edit (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    node       text NOT NULL CHECK (node <> ''),
    listed     boolean,
    region     text,
    remarks    text,
    actor      text NOT NULL,
    at         timestamptz NOT NULL DEFAULT now(),
    applied_at timestamptz,
    CHECK (listed IS NOT NULL OR region IS NOT NULL OR remarks IS NOT NULL)
);
CREATE INDEX node_edit_pending ON control.node_edit (node, id) WHERE applied_at IS NULL;

GRANT SELECT, INSERT ON control.node_edit TO gpuledger_app;
GRANT UPDATE (applied_at) ON control.node_edit TO gpuledger_app;
GRANT SELECT ON control.node_edit TO gpuledger_auditor;
