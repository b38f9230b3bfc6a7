"""The hourly usage rollup's read side: series and tables for the console's charts, from ``ledger.usage_hourly``
(migration 0007) instead of the raw usage rows.

The rollup holds usage rows summed per UTC hour of their interval end, so it answers the same question as the
usage report (``ledger.reports.usage``): for a period whose ends are whole UTC hours the figures are equal to the
last unit. Refunds and reversals do not change usage rows, so they are in neither (the revenue report has them).

Buckets are local, in the zone given: a day, week (Monday) or month starts at local midnight. An hourly row
goes to the local bucket its UTC hour *starts* in. In a zone with a whole-hour offset every local bucket is a
run of whole UTC hours, so a bucket is exact. In a zone whose offset is not a whole hour (Asia/Kolkata +05:30,
Australia/Adelaide +09:30, Asia/Kathmandu +05:45) an hour row straddles local midnight and cannot be split: the
whole row counts in the bucket where it starts, so a local day holds the UTC hours from the one its midnight
falls in up to (not including) the one the next midnight falls in. Such a day then differs from a usage report
over the same local dates by the straddling part-hours at each end; the buckets still add up to the whole.

Exact values only: quantities ``Decimal`` in the record's unit (gpu-second, core-second, GiB-second), money
``int`` micro-units; turning either into GPU-hours or currency for display is the caller's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.engine import Connection

from ledger.errors import LedgerError

Bucket = Literal["hour", "day", "week", "month"]
By = Literal["model", "resource", "user", "node", "wallet"]
BUCKETS: tuple[Bucket, ...] = ("hour", "day", "week", "month")
# What each grouping reads: the rollup keeps ids for user and wallet, names come from their tables.
KEYS: Mapping[str, str] = {"model": "h.model", "resource": "h.resource", "user": "bu.name", "node": "h.node",
                           "wallet": "w.code"}
# Names are joined only when a query groups or filters by them: the pages' charts need neither.
_JOINS = {"bu.": " JOIN ledger.billing_user bu ON bu.id = h.user_id",
          "w.": " JOIN ledger.account w ON w.id = h.account_id"}


def _from(*uses: str) -> str:
    named = " ".join(uses)
    return "FROM ledger.usage_hourly h" + "".join(join for alias, join in _JOINS.items() if alias in named)


@dataclass(frozen=True)
class SeriesPoint:
    """One bucket of one key: ``bucket`` is the bucket's local start (aware, in the zone asked for); ``key`` is
    None when the series is not grouped. Units never mix: each unit is its own point."""

    bucket: datetime
    key: str | None
    unit: str
    quantity: Decimal
    amount: int
    records: int


@dataclass(frozen=True)
class UserTotal:
    user: str
    unit: str
    quantity: Decimal
    amount: int


@dataclass(frozen=True)
class DayCharge:
    day: date
    amount: int


@dataclass(frozen=True)
class RollupKey:
    hour: datetime
    user_id: int
    account_id: int
    node: str
    model: str
    resource: str
    unit: str


@dataclass(frozen=True)
class RollupFigures:
    quantity: Decimal
    amount: int
    records: int


@dataclass(frozen=True)
class RollupDifference:
    """One key where the stored rollup and its recomputation from ``ledger.usage`` differ (None: no row)."""

    key: RollupKey
    stored: RollupFigures | None
    recomputed: RollupFigures | None


def _whole_hour(name: str, at: datetime | None) -> None:
    """The rollup answers in whole UTC hours only: a part hour would silently count the whole hour's usage."""
    if at is None:
        return
    if at.tzinfo is None:
        raise LedgerError(f"rollup {name} must be an aware datetime", **{name: at.isoformat()})
    if at.timestamp() % 3600:
        raise LedgerError(f"rollup {name} must be a whole UTC hour", **{name: at.isoformat()})


def _hours(start: datetime | None, end: datetime | None) -> dict[str, datetime | None]:
    _whole_hour("start", start)
    _whole_hour("end", end)
    if start is not None and end is not None and end < start:
        raise LedgerError("rollup end is before its start", start=start.isoformat(), end=end.isoformat())
    return {"lo": start, "hi": end}


def _filters(user: str | None, wallet: str | None, resource: str | None) -> tuple[str, dict[str, Any]]:
    where = ""
    params: dict[str, Any] = {}
    for column, value in (("bu.name", user), ("w.code", wallet), ("h.resource", resource)):
        if value is not None:
            name = f"f{len(params)}"
            where += f" AND {column} = :{name}"
            params[name] = value
    return where, params


def usage_series(conn: Connection, *, start: datetime, end: datetime, bucket: Bucket, tz: str | ZoneInfo,
                 by: By | None = None, user: str | None = None, wallet: str | None = None,
                 resource: str | None = None) -> list[SeriesPoint]:
    """Usage of ``[start, end)`` (whole UTC hours) per local ``bucket`` in ``tz``, per ``by`` and unit, ordered
    by bucket, key, unit; ``user``, ``wallet`` (an account code) and ``resource`` narrow it."""
    if bucket not in BUCKETS:
        raise LedgerError(f"rollup bucket must be one of {list(BUCKETS)}", bucket=bucket)
    if by is not None and by not in KEYS:
        raise LedgerError(f"rollup by must be one of {sorted(KEYS)}", by=by)
    zone = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
    key = "NULL::text" if by is None else KEYS[by]
    # Summed per hour first, then bucketed: date_trunc in a zone is costly per call, and a bucket is whole hours.
    where, params = _filters(user, wallet, resource)
    rows = conn.execute(
        text("SELECT date_trunc(:bucket, g.hour, :tz), g.k, g.unit, sum(g.q), sum(g.a), sum(g.n) FROM"  # noqa: S608
             f" (SELECT h.hour, {key} AS k, h.unit, sum(h.quantity) AS q, sum(h.amount) AS a, sum(h.records) AS n"
             f"  {_from(key, where)} WHERE h.hour >= :lo AND h.hour < :hi{where} GROUP BY 1, 2, 3) g"
             " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"),
        {"bucket": bucket, "tz": zone.key, **_hours(start, end), **params},
    )
    return [SeriesPoint(b.astimezone(zone), k, unit, Decimal(q), int(a), int(n)) for b, k, unit, q, a, n in rows]


def top_users(conn: Connection, *, start: datetime, end: datetime, resource: str = "gpu",
              limit: int = 10) -> list[UserTotal]:
    """The ``limit`` users with the most ``resource`` over ``[start, end)``: by quantity, then money, then name."""
    if limit < 1:
        raise LedgerError("top users limit must be at least 1", limit=limit)
    rows = conn.execute(
        text(f"SELECT bu.name, h.unit, sum(h.quantity) AS q, sum(h.amount) AS a {_from('bu.')}"
             " WHERE h.hour >= :lo AND h.hour < :hi AND h.resource = :resource"
             " GROUP BY bu.name, h.unit ORDER BY q DESC, a DESC, bu.name LIMIT :limit"),
        {**_hours(start, end), "resource": resource, "limit": limit},
    )
    return [UserTotal(name, unit, Decimal(q), int(a)) for name, unit, q, a in rows]


def charged_per_day(conn: Connection, *, start: datetime, end: datetime, tz: str | ZoneInfo,
                    wallet: str | None = None) -> list[DayCharge]:
    """Money charged for usage per local day in ``tz`` (every resource), days with no charge left out."""
    zone = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
    where, params = _filters(None, wallet, None)
    rows = conn.execute(
        text("SELECT date_trunc('day', g.hour, :tz), sum(g.a) FROM (SELECT h.hour, sum(h.amount) AS a"  # noqa: S608
             f" {_from(where)} WHERE h.hour >= :lo AND h.hour < :hi{where} GROUP BY 1) g"
             " GROUP BY 1 HAVING sum(g.a) <> 0 ORDER BY 1"),
        {"tz": zone.key, **_hours(start, end), **params},
    )
    return [DayCharge(d.astimezone(zone).date(), int(a)) for d, a in rows]


_DIFFERENCES = """
SELECT coalesce(s.hour, r.hour), coalesce(s.user_id, r.user_id), coalesce(s.account_id, r.account_id),
       coalesce(s.node, r.node), coalesce(s.model, r.model), coalesce(s.resource, r.resource),
       coalesce(s.unit, r.unit), s.quantity, s.amount, s.records, r.quantity, r.amount, r.records
  FROM (SELECT * FROM ledger.usage_hourly
         WHERE (CAST(:lo AS timestamptz) IS NULL OR hour >= :lo) AND (CAST(:hi AS timestamptz) IS NULL OR hour < :hi)) s
  FULL JOIN ledger.usage_hourly_of(:lo, :hi) r
    USING (hour, user_id, account_id, node, model, resource, unit)
 WHERE s.quantity IS DISTINCT FROM r.quantity OR s.amount IS DISTINCT FROM r.amount
    OR s.records IS DISTINCT FROM r.records
 ORDER BY 1, 2, 3, 4, 5, 6, 7
"""


def _figures(quantity: Any, amount: Any, records: Any) -> RollupFigures | None:
    return None if records is None else RollupFigures(Decimal(quantity), int(amount), int(records))


def differences(conn: Connection, start: datetime | None = None, end: datetime | None = None) -> list[RollupDifference]:
    """Every key of the hours ``[start, end)`` (None: unbounded; whole hours) where ``ledger.usage_hourly`` is not
    what ``ledger.usage`` sums to (``ledger.usage_hourly_of``, the one grouping the trigger and rebuild use)."""
    rows = conn.execute(text(_DIFFERENCES), _hours(start, end))
    return [RollupDifference(RollupKey(hour, int(uid), int(aid), node, model, resource, unit),
                             _figures(sq, sa, sn), _figures(rq, ra, rn))
            for hour, uid, aid, node, model, resource, unit, sq, sa, sn, rq, ra, rn in rows]


def rebuild(conn: Connection, start: datetime | None = None, end: datetime | None = None) -> int:
    """Recompute the hours ``[start, end)`` (None: unbounded; whole hours) from ``ledger.usage`` in ``conn``'s
    transaction, under the writer lock (``ledger.rebuild_usage_hourly``); returns the rollup rows written."""
    return int(conn.execute(text("SELECT ledger.rebuild_usage_hourly(:lo, :hi)"), _hours(start, end)).scalar_one())
