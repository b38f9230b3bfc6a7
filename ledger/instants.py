"""The one rule for printing a point in time, in the API's JSON and on every CLI listing: UTC, RFC 3339 with its
offset (``2026-01-31T16:00:00+00:00``). One rule, so a time copied from the CLI matches the API's and a log's.
Days (statement periods, period closes) stay local calendar days in ``GPULEDGER_TIMEZONE``: those are dates."""

from __future__ import annotations

from datetime import UTC, datetime


def instant(t: datetime) -> str:
    """``t`` in UTC, RFC 3339; a naive time is refused (every column is timestamptz: a naive time would be
    read in this host's zone)."""
    if t.tzinfo is None:
        raise ValueError(f"naive datetime {t!r}: only aware times are printed")
    return t.astimezone(UTC).isoformat()
