"""The live schema in one readable place: ``current.sql`` is what the migrations produce at head (generated)."""
