"""A user's usage per local day and GPU model (or resource), read from the ledger's usage rows
(ledger.browse.usage_page, every page of the period). The hourly rollup (issue #14 item 6) replaces this
read; the totals are the ledger's, to the micro-unit and to the last digit of quantity."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Connection

from ledger import browse
from ledger.money import parse_amount

PAGE = 500


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


def daily(conn: Connection, user: str, start: date, end: date, tz: ZoneInfo) -> DailyUsage:
    """Usage of ``user`` with intervals ending in local days [start, end), by day and key."""
    days = tuple(start + timedelta(days=i) for i in range((end - start).days))
    index = {d: i for i, d in enumerate(days)}
    amounts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * len(days))
    quantities: dict[tuple[str, str], list[Decimal]] = defaultdict(lambda: [Decimal(0)] * len(days))
    filters = {"user": user, "start": datetime.combine(start, time(), tzinfo=tz),
               "end": datetime.combine(end, time(), tzinfo=tz)}
    after: int | None = 0
    while after is not None:
        items, after = browse.usage_page(conn, filters, after, PAGE, with_evidence=False)
        for item in items:
            # The usage row's day is the local day its interval ends in, as the ledger's usage report counts it.
            day = datetime.fromisoformat(item["interval_end"]).astimezone(tz).date()
            key = (item["model"] or item["resource"]) if item["resource"] == "gpu" else item["resource"]
            amounts[(key, item["unit"])][index[day]] += parse_amount(item["amount"])
            quantities[(key, item["unit"])][index[day]] += Decimal(item["quantity"])
    return DailyUsage(days, tuple(Series(k, u, tuple(amounts[(k, u)]), tuple(quantities[(k, u)]))
                                  for k, u in sorted(amounts)))
