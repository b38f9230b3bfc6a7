"""Moving a lab over from the system it replaces (issue #17, docs/migrating.md).

``source`` reads the old database (hit-aiot-ops) in one read-only transaction, ``plan`` turns what it read into
what gpuledger will hold (pure: opening balances, reconciliation, mappings, exemptions, prices), ``apply`` writes
that in one ledger transaction, ``cli`` is ``gpuledger import hit-aiot-ops``. It lives in the ledger because it
posts entries and writes ledger tables in one transaction, which no other package may do.
"""
