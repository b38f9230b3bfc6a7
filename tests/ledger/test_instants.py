"""The one rule for printing a point in time (ledger.instants), shared by the API and every CLI listing."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from ledger.instants import instant


def test_a_local_time_prints_in_utc_with_its_offset() -> None:
    assert instant(datetime(2026, 3, 1, 8, 0, tzinfo=ZoneInfo("Asia/Shanghai"))) == "2026-03-01T00:00:00+00:00"
    assert instant(datetime(2026, 7, 1, 0, 0, 0, 250_000, tzinfo=ZoneInfo("America/Los_Angeles"))) == (
        "2026-07-01T07:00:00.250000+00:00")


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        instant(datetime(2026, 3, 1, 8, 0))
