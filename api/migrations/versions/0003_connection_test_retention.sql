CREATE INDEX connection_test_finished ON api.connection_test (finished_at) WHERE finished_at IS NOT NULL;
GRANT DELETE ON api.connection_test TO gpuledger_app;
