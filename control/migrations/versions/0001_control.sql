-- What admins ask of the controller, owned by the control package (control/): moved here from the api schema
-- with their rows, ids, sequences, indexes and grants (a table's privileges travel with it).
CREATE SCHEMA control;
REVOKE ALL ON SCHEMA control FROM PUBLIC;
GRANT USAGE ON SCHEMA control TO gpuledger_app, gpuledger_auditor;

ALTER TABLE api.settings_version SET SCHEMA control;
ALTER TABLE api.enforcement_override SET SCHEMA control;
ALTER TABLE api.connection_test SET SCHEMA control;

-- The grants they carried (api0001, api0002, api0003), restated so this schema's are readable in one place;
-- granting what a role already holds changes nothing.
GRANT SELECT, INSERT ON control.settings_version, control.enforcement_override TO gpuledger_app;
GRANT SELECT, INSERT, DELETE ON control.connection_test TO gpuledger_app;
GRANT UPDATE (started_at, finished_at, outcome, detail) ON control.connection_test TO gpuledger_app;
GRANT SELECT ON control.settings_version, control.enforcement_override, control.connection_test
    TO gpuledger_auditor;
