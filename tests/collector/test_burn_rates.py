"""The burn rate is read again only when it is stale, except for users it has not read yet."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from collector.enforcing.standing import BurnRates

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


class _Reads:
    def __init__(self) -> None:
        self.asked: list[list[str]] = []
        self.spent = {"alice": 100, "bob": 200}

    def __call__(self, conn: Any, users: Sequence[str], now: datetime) -> dict[str, int]:
        self.asked.append(list(users))
        return {u: self.spent[u] for u in users if u in self.spent}


def test_rates_are_read_once_per_refresh_and_new_users_at_once() -> None:
    reads, clock = _Reads(), [0.0]
    rates = BurnRates(300, read=reads, clock=lambda: clock[0])
    assert rates.get(None, ["alice", "carol"], NOW) == {"alice": 100, "carol": 0}  # type: ignore[arg-type]
    reads.spent["alice"] = 150
    clock[0] = 299.0
    assert rates.get(None, ["alice", "bob"], NOW) == {"alice": 100, "bob": 200}  # type: ignore[arg-type]
    assert reads.asked == [["alice", "carol"], ["bob"]]
    clock[0] = 300.0
    assert rates.get(None, ["alice"], NOW) == {"alice": 150}  # type: ignore[arg-type]
    assert reads.asked[-1] == ["alice"]
    assert rates.get(None, [], NOW) == {}  # type: ignore[arg-type]
    assert len(reads.asked) == 3
