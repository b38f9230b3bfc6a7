"""A user's usage per local day and GPU model (or resource), read from the ledger's usage rollup
(``ledger.rollup.usage_series``, issue #14 item 6), not the raw usage rows: a 90-day page reads a few hundred
aggregate rows. The rollup is the usage report summed per hour, so the totals are the ledger's, to the micro-unit
and to the last digit of quantity (tests/console/test_browser.py checks the chart against ``usage_report``).
In a zone whose offset is not a whole hour, a day is the rollup's day: the UTC hours that start in it."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Connection

from ledger import rollup


@dataclass(frozen=True)
class Series:
    key: str          # the GPU model, or the resource for CPU and memory
    unit: str
    amounts: tuple[int, ...]          # micro-units per day
    quantities: tuple[Decimal, ...]   # per day, in ``unit``

    @property
    def amount(self) -> int:
        return sum(self.amounts)

    @property
    def quantity(self) -> Decimal:
        return sum(self.quantities, Decimal(0))


@dataclass(frozen=True)
class DailyUsage:
    days: tuple[date, ...]
    series: tuple[Series, ...]

    @property
    def total(self) -> int:
        return sum(s.amount for s in self.series)

    def day_totals(self) -> tuple[int, ...]:
        return tuple(sum(s.amounts[i] for s in self.series) for i in range(len(self.days)))


def _day_start(day: date, tz: ZoneInfo) -> datetime:
    """The first UTC hour of the local ``day``: its midnight, or the next whole hour where midnight is not on one
    (the rollup asks whole hours, and counts an hour in the day it starts in)."""
    midnight = datetime.combine(day, time(), tzinfo=tz).astimezone(UTC)
    whole = midnight.replace(minute=0, second=0, microsecond=0)
    return whole if whole == midnight else whole + timedelta(hours=1)


def daily(conn: Connection, user: str, start: date, end: date, tz: ZoneInfo) -> DailyUsage:
    """Usage of ``user`` in local days [start, end), by day and key: the GPU model for GPUs, else the resource."""
    days = tuple(start + timedelta(days=i) for i in range((end - start).days))
    index = {d: i for i, d in enumerate(days)}
    amounts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * len(days))
    quantities: dict[tuple[str, str], list[Decimal]] = defaultdict(lambda: [Decimal(0)] * len(days))
    lo, hi = _day_start(start, tz), _day_start(end, tz)
    points = rollup.usage_series(conn, start=lo, end=hi, bucket="day", tz=tz, user=user, by="model", resource="gpu")
    points += [p for p in rollup.usage_series(conn, start=lo, end=hi, bucket="day", tz=tz, user=user, by="resource")
               if p.key != "gpu"]
    for p in points:
        key = (p.key or "gpu", p.unit)
        amounts[key][index[p.bucket.date()]] += p.amount
        quantities[key][index[p.bucket.date()]] += p.quantity
    return DailyUsage(days, tuple(Series(k, u, tuple(amounts[(k, u)]), tuple(quantities[(k, u)]))
                                  for k, u in sorted(amounts)))
