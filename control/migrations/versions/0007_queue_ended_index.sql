-- Each tick reads the live requests and those that ended (or were refused) in the last hour, for the users'
-- answers (control.queue.store.standings: state IN (live) OR ended_at >= :since). The live ones come from
-- queue_request_live; without an index on ended_at the other half of the OR was a scan of every request ever
-- filed, and ended rows only accumulate. With it the planner ORs two index scans.
CREATE INDEX queue_request_ended ON control.queue_request (ended_at);
