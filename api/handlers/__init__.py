"""Route handlers, one module per resource; each takes a validated ``Call`` and returns JSON data."""
