"""What admins ask of the controller (docs/api.md, "Settings"): the records and rules that the API writes and
the controller applies, in one place so both sides read them the same way. Imports only ``ledger``."""
