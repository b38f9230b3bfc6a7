"""What admins ask of the controller (docs/api.md, "Settings"): settings versions, enforcement overrides,
connection tests and node edits, as records, rules and their store (schema ``control``, its own migration
chain). The API writes them and the controller applies them, both through these functions, so neither touches
the other's tables and both read them the same way. Imports only ``ledger``.

One module a concept: ``settings`` (the one parser), ``versions``, ``overrides``, ``connections``, ``nodes``;
``snapshot`` is the controller's one read per tick; ``presence`` tells the controller whether the chain has run.
"""
