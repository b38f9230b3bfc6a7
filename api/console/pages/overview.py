"""The machines overview, the landing page of admins, operators and auditors (issue #14, admin item 4): GPUs
in use, held but idle and free by model per hour/day/week/month; money charged per day; top users by GPU-hours
(the ledger's rollup) and by held-but-idle GPU time; nodes down or stale.

GPU states come from ``collector.gpu_activity``, where a row counts samples, one per controller tick. The API
does not know the controller's tick interval (GPULEDGER_TICK_SECONDS is the controller's environment), so
states are shown as shares of the bucket's samples and idle holding as sample counts, never as hours."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from starlette.responses import Response

from api.console.web import page_of
from api.operation import Call
from api.services import services
from ledger import directory, rollup

# How far back each bucket looks: enough buckets for a trend, few enough for a table.
SPANS: Mapping[str, timedelta] = {"hour": timedelta(hours=24), "day": timedelta(days=14),
                                  "week": timedelta(weeks=12), "month": timedelta(days=366)}
CHARGED_DAYS = 14
TOP = 10
TROUBLED = 20
STALE = timedelta(minutes=10)
_GPU_SECONDS_PER_HOUR = Decimal(3600)


@dataclass(frozen=True)
class StateShare:
    """One bucket of one GPU model: its samples and how many found the GPU busy, held but idle, or free."""

    bucket: datetime
    model: str
    samples: int
    busy: int
    idle_held: int

    @property
    def free(self) -> int:
        return self.samples - self.busy - self.idle_held

    def percent(self, part: int) -> Decimal:
        """A share in percent to one decimal, rounded half up (display only; the counts are exact)."""
        return (Decimal(100 * part) / self.samples).quantize(Decimal("0.1"), rounding="ROUND_HALF_UP")


def states(conn: Any, start: datetime, end: datetime, bucket: str, tz: str) -> list[StateShare]:
    rows = conn.execute(text(
        "SELECT date_trunc(:bucket, hour, :tz), model, sum(samples), sum(held_samples - idle_held_samples),"
        " sum(idle_held_samples) FROM collector.gpu_activity WHERE hour >= :lo AND hour < :hi"
        " GROUP BY 1, 2 ORDER BY 1, 2"), {"bucket": bucket, "tz": tz, "lo": start, "hi": end})
    return [StateShare(b, m, int(n), int(busy), int(idle)) for b, m, n, busy, idle in rows]


@dataclass(frozen=True)
class IdleHolder:
    """A billing user's held-but-idle samples over a period, with the (node, Linux user) holders behind them;
    ``user`` is None for a holder no mapping and no billing user of that name answers to (ranked on its own)."""

    user: str | None
    holders: tuple[tuple[str, str], ...]
    samples: int


def idle_holders(conn: Any, start: datetime, end: datetime, limit: int = TOP) -> list[IdleHolder]:
    """Billing users by held-but-idle samples, most first. Each (node, Linux user) holder goes through the
    ledger's directory resolution, the mapping the charges use, so idle holding is ranked per person who
    pays, not per account; a GPU held by several counts for each holder."""
    rows = [(n, u, int(c)) for n, u, c in conn.execute(text(
        "SELECT node, holder, sum(idle_held_samples) FROM collector.gpu_activity, unnest(holders) AS holder"
        " WHERE hour >= :lo AND hour < :hi AND idle_held_samples > 0 GROUP BY 1, 2"), {"lo": start, "hi": end})]
    billed = directory.resolve(conn, [(n, u) for n, u, _ in rows])
    ranked: dict[tuple[str | None, tuple[str, str] | None], list[tuple[str, str, int]]] = {}
    for n, u, c in rows:
        user = billed.get((n, u))
        ranked.setdefault((user, None if user is not None else (n, u)), []).append((n, u, c))
    found = [IdleHolder(user, tuple(sorted((n, u) for n, u, _ in held)), sum(c for _, _, c in held))
             for (user, _), held in ranked.items()]
    return sorted(found, key=lambda h: (-h.samples, h.user is None, h.user or "", h.holders))[:limit]


Troubled = tuple[str, str, datetime | None, str | None]   # name, status, last seen, last error


def _troubled(conn: Any, now: datetime, limit: int = TROUBLED) -> tuple[list[Troubled], int]:
    """The first ``limit`` listed nodes (by name) whose last connection failed, or last seen over STALE ago (or
    never), and how many there are: a registry of a thousand unseen nodes rendered as a thousand rows here."""
    rows = [tuple(r) for r in conn.execute(text(
        "SELECT name, status, last_seen_at, last_error, count(*) OVER () FROM collector.node_status"
        " WHERE listed AND in_inventory AND (status <> 'connected' OR last_seen_at IS NULL OR last_seen_at < :stale)"
        " ORDER BY name LIMIT :limit"), {"stale": now - STALE, "limit": limit})]
    return [r[:4] for r in rows], int(rows[0][4]) if rows else 0


def chart_data(shares: Sequence[StateShare], charged: Sequence[rollup.DayCharge], currency: str,
               timezone: str) -> dict[str, Any]:
    """The overview charts' data, oldest first like the tables: sample counts per bucket summed over the models
    (the script draws their shares) and micro-unit charges per day, exact integers; the tables stay the
    accessible, exact fallback. ``timezone`` (the ledger's) is the zone the script shows the buckets in."""
    buckets: dict[datetime, list[int]] = {}
    for s in shares:
        counts = buckets.setdefault(s.bucket, [0, 0, 0, 0])
        for i, n in enumerate((s.samples, s.busy, s.idle_held, s.free)):
            counts[i] += n
    keys = ("samples", "busy", "idle", "free")
    return {"states": {"buckets": [b.isoformat() for b in buckets],
                       **{k: [c[i] for c in buckets.values()] for i, k in enumerate(keys)}},
            "charged": {"days": [d.day.isoformat() for d in charged], "amounts": [d.amount for d in charged]},
            "currency": currency, "timezone": timezone}


def overview(call: Call) -> Response:
    page, svc = page_of(call), services(call)
    bucket = call.params.get("bucket", "day")
    tz = svc.ledger.config.timezone
    now = datetime.now(UTC)
    end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)  # the hour in progress included
    start = end - SPANS[bucket]
    whole = now.replace(minute=0, second=0, microsecond=0)  # the rollup's reads take whole hours
    with svc.read() as conn:
        shares = states(conn, start, end, bucket, tz.key)
        charged = rollup.charged_per_day(conn, start=whole - timedelta(days=CHARGED_DAYS), end=whole, tz=tz)
        top = rollup.top_users(conn, start=whole - SPANS[bucket], end=whole, resource="gpu", limit=TOP)
        idle = idle_holders(conn, start, end)
        troubled, troubled_count = _troubled(conn, now)
    # GPU-hours to two decimals, half up: display only (the rollup's gpu-seconds are exact).
    top_hours = [(u.user, (u.quantity / _GPU_SECONDS_PER_HOUR).quantize(Decimal("0.01"), rounding="ROUND_HALF_UP"),
                  u.amount) for u in top if u.unit == "gpu-second"]
    chart = chart_data(shares, charged, svc.ledger.config.currency, tz.key)
    return page.render("ops/overview.html", chart_json=json.dumps(chart), bucket=bucket, buckets=tuple(SPANS),
                       shares=shares, charged=charged,
                       top=top_hours, idle=idle, troubled=troubled,
                       troubled_count=troubled_count, start=start, stale_minutes=STALE.seconds // 60)
