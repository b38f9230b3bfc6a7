"""The hourly usage rollup's read side: series and tables for the console's charts, from ``ledger.usage_hourly``
(migration 0007) instead of the raw usage rows.

The rollup holds usage rows summed per UTC hour of their interval end, so it answers the same question as the
usage report (``ledger.reports.usage``): for a period whose ends are whole UTC hours the figures are equal to the
last unit. Refunds and reversals do not change usage rows, so they are in neither (the revenue report has them).

Buckets are local, in the zone given: a day, week (Monday) or month starts at local midnight. An hourly row
goes to the local bucket its UTC hour *starts* in. In a zone with a whole-hour offset every local bucket is a
run of whole UTC hours, so a bucket is exact. In a zone whose offset is not a whole hour (Asia/Kolkata +05:30,
Australia/Adelaide +09:30, Asia/Kathmandu +05:45) an hour row straddles local midnight and cannot be split: the
whole row counts in the bucket where it starts, so a local day holds the UTC hours from the first one starting at
or after its midnight up to (not including) the first one starting at or after the next midnight. Such a day then
differs from a usage report over the same local dates by the straddling part-hours at each end; the buckets still
add up to the whole.

Two levels: ``ledger.usage_hourly`` and ``ledger.usage_daily`` (migration 0008: the hourly rows summed per local
day in the one zone of ``ledger.rollup_zone``). A day, week or month series, the charges per day and the top users
read the daily level for the local days wholly inside the period and the hourly level for the hours at its ends;
an hourly series, or a series bucketed in another zone than the daily level's, reads hours only (same figures).

Exact values only: quantities ``Decimal`` in the record's unit (gpu-second, core-second, GiB-second), money
``int`` micro-units; turning either into GPU-hours or currency for display is the caller's.

A daily level (``ledger.usage_daily``, migration 0008) holds the hourly rows summed per local day in one zone, the
ledger's configured one (``ledger.rollup_zone``, set by ``set_zone``). A question by day, week or month in that zone,
and any unbucketed total, reads the days wholly inside the period from it and only the hours at either end from the
hourly level; the figures are the same as from hours alone (the day is the hours' own bucket rule), there are just
about 24 times fewer rows. Asked in another zone, every row read is hourly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
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


_COLUMNS = "user_id, account_id, node, model, resource, unit, quantity, amount, records"


def _from(source: str, *uses: str) -> str:
    named = " ".join(uses)
    return f"FROM {source} h" + "".join(join for alias, join in _JOINS.items() if alias in named)


def _local_day_start(day: date, zone: ZoneInfo) -> datetime:
    """The first UTC hour of ``day`` in the daily level: the one the local midnight falls in, or the next when
    midnight is not on a whole hour (an hour belongs to the day it starts in)."""
    midnight = datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)
    whole = midnight.replace(minute=0, second=0, microsecond=0)
    return whole if whole == midnight else whole + timedelta(hours=1)


_HOURLY = f"SELECT hour AS t, {_COLUMNS} FROM ledger.usage_hourly"  # noqa: S608


def _hourly(start: datetime, end: datetime) -> tuple[str, dict[str, Any]]:
    return f"({_HOURLY} WHERE hour >= :lo AND hour < :hi)", _hours(start, end)


def _source(conn: Connection, start: datetime, end: datetime,
            bucketed_in: ZoneInfo | None) -> tuple[str, dict[str, Any]]:
    """The rollup rows of ``[start, end)`` as one relation (columns ``t``, the bucket-able instant, and the hourly
    level's): the daily level's rows for the local days wholly inside, the hourly level's for the hours at either
    end. ``bucketed_in``: the zone the caller buckets in by day, week or month (None: it does not bucket); the daily
    level is read only when it is kept in that zone, else every row is hourly (same figures, more rows)."""
    source, params = _hourly(start, end)
    daily_zone = zone(conn)
    if bucketed_in is not None and bucketed_in.key != daily_zone.key:
        return source, params
    first = start.astimezone(daily_zone).date()
    if _local_day_start(first, daily_zone) < start:
        first += timedelta(days=1)
    last = end.astimezone(daily_zone).date()  # its first hour is at or before end: end is a whole hour
    if first >= last:
        return source, params
    params.update(d_lo=first, d_hi=last, h_lo=_local_day_start(first, daily_zone),
                  h_hi=_local_day_start(last, daily_zone), zone=daily_zone.key)
    return (f"({_HOURLY} WHERE (hour >= :lo AND hour < :h_lo) OR (hour >= :h_hi AND hour < :hi)"  # noqa: S608
            f" UNION ALL SELECT CAST(day AS timestamp) AT TIME ZONE :zone, {_COLUMNS} FROM ledger.usage_daily"
            " WHERE day >= :d_lo AND day < :d_hi)"), params


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
    # A user or wallet is looked up once (a scalar subquery, run before the scan), so the comparison is on the
    # rollup's own id column and its (id, hour/day) indexes serve it; a join on the name filtered only after the
    # range's rows of every user were read.
    for column, value in (("h.user_id = (SELECT id FROM ledger.billing_user WHERE name = :{})", user),
                          ("h.account_id = (SELECT id FROM ledger.account WHERE code = :{})", wallet),
                          ("h.resource = :{}", resource)):
        if value is not None:
            name = f"f{len(params)}"
            where += " AND " + column.format(name)
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
    where, params = _filters(user, wallet, resource)
    # An hourly series needs hours; a day, week or month is whole local days, so the daily level serves its middle.
    source, bounds = _source(conn, start, end, zone) if bucket != "hour" else _hourly(start, end)
    # Summed per instant first, then bucketed: date_trunc in a zone is costly per call, and a bucket is whole hours.
    rows = conn.execute(
        text("SELECT date_trunc(:bucket, g.t, :tz), g.k, g.unit, sum(g.q), sum(g.a), sum(g.n) FROM"  # noqa: S608
             f" (SELECT h.t, {key} AS k, h.unit, sum(h.quantity) AS q, sum(h.amount) AS a, sum(h.records) AS n"
             f"  {_from(source, key, where)} WHERE true{where} GROUP BY 1, 2, 3) g"
             " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"),
        {"bucket": bucket, "tz": zone.key, **bounds, **params},
    )
    return [SeriesPoint(b.astimezone(zone), k, unit, Decimal(q), int(a), int(n)) for b, k, unit, q, a, n in rows]


def top_users(conn: Connection, *, start: datetime, end: datetime, resource: str = "gpu",
              limit: int = 10) -> list[UserTotal]:
    """The ``limit`` users with the most ``resource`` over ``[start, end)``: by quantity, then money, then name."""
    if limit < 1:
        raise LedgerError("top users limit must be at least 1", limit=limit)
    source, bounds = _source(conn, start, end, None)
    rows = conn.execute(
        text(f"SELECT bu.name, h.unit, sum(h.quantity) AS q, sum(h.amount) AS a {_from(source, 'bu.')}"
             " WHERE h.resource = :resource"
             " GROUP BY bu.name, h.unit ORDER BY q DESC, a DESC, bu.name LIMIT :limit"),
        {**bounds, "resource": resource, "limit": limit},
    )
    return [UserTotal(name, unit, Decimal(q), int(a)) for name, unit, q, a in rows]


def charged_per_day(conn: Connection, *, start: datetime, end: datetime, tz: str | ZoneInfo,
                    wallet: str | None = None) -> list[DayCharge]:
    """Money charged for usage per local day in ``tz`` (every resource), days with no charge left out."""
    zone = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
    where, params = _filters(None, wallet, None)
    source, bounds = _source(conn, start, end, zone)
    rows = conn.execute(
        text("SELECT date_trunc('day', g.t, :tz), sum(g.a) FROM (SELECT h.t, sum(h.amount) AS a"  # noqa: S608
             f" {_from(source, where)} WHERE true{where} GROUP BY 1) g"
             " GROUP BY 1 HAVING sum(g.a) <> 0 ORDER BY 1"),
        {"tz": zone.key, **bounds, **params},
    )
    return [DayCharge(d.astimezone(zone).date(), int(a)) for d, a in rows]


def _differences_sql(key: str, table: str, recomputed: str, within: str = "") -> str:
    """Stored level ``table`` against its recomputation, every key whose figures differ (or that one side lacks)."""
    return (f"SELECT coalesce(s.{key}, r.{key}), coalesce(s.user_id, r.user_id),"  # noqa: S608
            " coalesce(s.account_id, r.account_id), coalesce(s.node, r.node), coalesce(s.model, r.model),"
            " coalesce(s.resource, r.resource), coalesce(s.unit, r.unit), s.quantity, s.amount, s.records,"
            f" r.quantity, r.amount, r.records FROM (SELECT * FROM {table}{within}) s FULL JOIN {recomputed} r"
            f" USING ({key}, user_id, account_id, node, model, resource, unit)"
            " WHERE s.quantity IS DISTINCT FROM r.quantity OR s.amount IS DISTINCT FROM r.amount"
            " OR s.records IS DISTINCT FROM r.records ORDER BY 1, 2, 3, 4, 5, 6, 7")


_DIFFERENCES = _differences_sql(
    "hour", "ledger.usage_hourly", "ledger.usage_hourly_of(:lo, :hi)",
    " WHERE (CAST(:lo AS timestamptz) IS NULL OR hour >= :lo) AND (CAST(:hi AS timestamptz) IS NULL OR hour < :hi)")
_DAILY_DIFFERENCES = _differences_sql("day", "ledger.usage_daily", "ledger.usage_daily_of(NULL, NULL)")


def _figures(quantity: Any, amount: Any, records: Any) -> RollupFigures | None:
    return None if records is None else RollupFigures(Decimal(quantity), int(amount), int(records))


def differences(conn: Connection, start: datetime | None = None, end: datetime | None = None) -> list[RollupDifference]:
    """Every key of the hours ``[start, end)`` (None: unbounded; whole hours) where ``ledger.usage_hourly`` is not
    what ``ledger.usage`` sums to (``ledger.usage_hourly_of``, the one grouping the trigger and rebuild use)."""
    rows = conn.execute(text(_DIFFERENCES), _hours(start, end))
    return [RollupDifference(RollupKey(hour, int(uid), int(aid), node, model, resource, unit),
                             _figures(sq, sa, sn), _figures(rq, ra, rn))
            for hour, uid, aid, node, model, resource, unit, sq, sa, sn, rq, ra, rn in rows]


@dataclass(frozen=True)
class DailyDifference:
    """One key where the daily level and the hourly level summed per local day (``ledger.usage_daily_of``) differ;
    ``day`` is the local day in the level's zone."""

    day: date
    user_id: int
    account_id: int
    node: str
    model: str
    resource: str
    unit: str
    stored: RollupFigures | None
    recomputed: RollupFigures | None


def daily_differences(conn: Connection) -> list[DailyDifference]:
    """Every key where ``ledger.usage_daily`` is not the hourly level summed per local day."""
    return [DailyDifference(day, int(uid), int(aid), node, model, resource, unit, _figures(sq, sa, sn),
                            _figures(rq, ra, rn))
            for day, uid, aid, node, model, resource, unit, sq, sa, sn, rq, ra, rn
            in conn.execute(text(_DAILY_DIFFERENCES))]


def zone(conn: Connection) -> ZoneInfo:
    """The zone the daily level is kept in."""
    return ZoneInfo(conn.execute(text("SELECT zone FROM ledger.rollup_zone")).scalar_one())


def set_zone(conn: Connection, tz: ZoneInfo) -> bool:
    """Keep the daily level in ``tz`` (the ledger's configured zone), rebuilding it when the zone changes, in
    ``conn``'s transaction under the writer lock; returns whether it changed."""
    return bool(conn.execute(text("SELECT ledger.set_rollup_zone(:z)"), {"z": tz.key}).scalar_one())


def rebuild(conn: Connection, start: datetime | None = None, end: datetime | None = None) -> int:
    """Recompute the hours ``[start, end)`` (None: unbounded; whole hours) from ``ledger.usage`` in ``conn``'s
    transaction, under the writer lock (``ledger.rebuild_usage_hourly``), and the daily level's days they touch;
    returns the hourly rows written."""
    return int(conn.execute(text("SELECT ledger.rebuild_usage_hourly(:lo, :hi)"), _hours(start, end)).scalar_one())
