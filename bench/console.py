"""Console read benchmark: one command, prints a table.

    .venv/bin/python bench/console.py            # a year of a 24-node lab, 10 million postings
    .venv/bin/python bench/console.py --small    # 100,000 postings, for a quick look
    .venv/bin/python bench/console.py --postings 2000000 --runs 50
    .venv/bin/python bench/console.py --keep /var/tmp/gl-console   # keep the database; a second run reuses it

1. Generates a year (2026) of a 24-node lab's usage in the shape ``ledger.post_usage`` writes it: per usage row
   (GPU or CPU, one of 40 users, three GPU models by node, the day's ticks evenly spaced) one ``usage`` entry and two
   postings (wallet debited, revenue credited). Written in SQL (``generate_series``) through the app role under
   the writer lock, one transaction per day, every trigger on (the rollup's too), the block sealed per day.
   The payload hashes are stand-ins, so ``audit verify`` would report them: it is not run here.
2. Rebuilds the whole rollup (``ledger.rollup.rebuild``, what ``gpuledger ledger rollup rebuild`` runs), then
   ``VACUUM ANALYZE`` (what autovacuum would have done).
3. Times each question the console's pages ask, ``--runs`` times, from the rollup (``ledger.rollup``) and the
   same question from the raw usage rows / postings for contrast (fewer runs: it is slow): p50 and p99 of the
   wall time of the query on a loopback connection (server time plus one round trip). The control: the 90-day
   chart asked in a zone of the same offset that the daily level is not kept in, so answered from hours alone
   (checked equal to the daily level's answer first).

4. Times every GET page of the route table (``api.routes.OPERATIONS``, rows with ``page=True``) over that data: the app
   built in-process (``api.app.create_app``), a client per role logged in through the console's own login form
   (an httpx ASGI transport, no network), p50 and p99 of the server time (measured around the app's ASGI call, so
   the client's parsing is not in it). Path parameters and query variants come from a small mapping (``PATH``,
   ``VARIANTS``); a page with a parameter the mapping lacks is listed as untimed, so pages added later are timed
   or named, never silently skipped. Each page is opened as the user (``y7``, own pages) and as the admin where
   the route table lets them.
5. A 1,000-node registry (``collector.nodes.registry.sync_inventory``, what the controller runs on each tick's
   inventory) and ``GET /v1/nodes`` as the admin over it (the node pages are not in the route table yet); GPUs
   and their hourly activity are not generated.

It starts its own PostgreSQL (ledger.embedded) under a temporary directory, or with ``--keep DIR`` in ``DIR``,
left there afterwards: a later run with the same ``--keep DIR`` finds the year generated (``DIR/generated.json``
records its size) and only migrates, rebuilds the rollup and times, so the timings can be rerun without the
generation (minutes at full size). A kept database generated for another ``--postings`` is refused.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from api import tokens
from api.app import create_app
from api.config import ApiConfig
from api.routes import OPERATIONS
from bench.table import print_rows
from collector.nodes.registry import sync_inventory
from collector.types import Node
from control import connections
from control.nodes import TABLE as NODE_EDITS
from control.presence import ControlTable
from gpuledger.main import upgrade_all
from ledger import rollup
from ledger.bootstrap import APP_ROLE, bootstrap
from ledger.config import LedgerConfig
from ledger.db import create_app_engine, reading, writing
from ledger.embedded import EmbeddedPostgres
from ledger.environ import Secret
from ledger.service import Ledger

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TZ = "Asia/Shanghai"
NODES, USERS = 24, 40
MODELS = ("NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3", "NVIDIA L40S")

# One day's usage rows: row s of the year is node s % 24, GPU when (s // 24) is even else CPU, its tick
# s // 48 (the day's ticks evenly spaced, :step seconds each); a node's GPU and its CPU each run one user's job
# for a quarter of a day (a function of node, resource, day and quarter). Amounts are about what a price gives.
_DAY_USAGE = """
INSERT INTO ledger.usage (idem_key, payload_sha256, node, linux_user, user_id, account_id, resource, model,
                          quantity, unit, interval_start, interval_end, method, evidence, epoch, price_version_id,
                          cumulative_quantity, amount)
SELECT 'bench/' || s, sha256(convert_to('bench/' || s, 'UTF8')), 'node' || lpad((s % 24)::text, 2, '0'),
       'y' || u, (CAST(:users AS bigint[]))[u + 1], (CAST(:wallets AS bigint[]))[u + 1], r.resource, r.model,
       r.quantity, r.unit, t - CAST(:step AS integer) * interval '1 second', t, 'bench', '{}',
       'bench/' || (s % 24) || '/' || u || '/' || r.resource,
       r.pv, r.quantity, r.amount
  FROM generate_series(CAST(:lo AS bigint), CAST(:hi AS bigint) - 1) AS s,
       LATERAL (SELECT CAST(:day AS timestamptz)
                       + ((s - :lo) / 48 + 1) * CAST(:step AS integer) * interval '1 second' AS t,
                       ((s % 24) * 3 + (s / 24) % 2 * 11 + :dayno * 7 + (s - :lo) / 48 * 4 / :ticks) % 40 AS u) k,
       LATERAL (SELECT CASE WHEN (s / 24) % 2 = 0 THEN 'gpu' ELSE 'cpu' END AS resource,
                       CASE WHEN (s / 24) % 2 = 0 THEN (CAST(:models AS text[]))[s % 24 % 3 + 1] ELSE '' END AS model,
                       CASE WHEN (s / 24) % 2 = 0 THEN 'gpu-second' ELSE 'core-second' END AS unit,
                       CASE WHEN (s / 24) % 2 = 0 THEN 600 ELSE 300 + s % 2400 END::numeric AS quantity,
                       CASE WHEN (s / 24) % 2 = 0 THEN CAST(:gpu_pv AS bigint) ELSE CAST(:cpu_pv AS bigint) END AS pv,
                       CASE WHEN (s / 24) % 2 = 0 THEN 5000000 ELSE (300 + s % 2400) * 333 END::bigint AS amount) r
"""
_DAY_ENTRIES = """
INSERT INTO ledger.journal_entry (idem_key, payload_sha256, kind, effective_at, usage_id, actor)
SELECT 'usage/' || u.idem_key, u.payload_sha256, 'usage', u.interval_end, u.id, 'bench'
  FROM ledger.usage u WHERE u.id > :mark
"""
_DAY_POSTINGS = """
INSERT INTO ledger.posting (entry_id, line, account_id, amount, effective_at)
SELECT e.id, l.line,
       CASE l.line WHEN 1 THEN u.account_id
            ELSE (CAST(:revenue AS bigint[]))[array_position(CAST(:codes AS text[]), u.model)] END,
       CASE l.line WHEN 1 THEN u.amount ELSE -u.amount END, e.effective_at
  FROM ledger.journal_entry e JOIN ledger.usage u ON u.id = e.usage_id CROSS JOIN (VALUES (1), (2)) AS l(line)
 WHERE e.id > :entry_mark
"""


def generate(ledger: Ledger, postings: int) -> tuple[int, float]:
    """Returns (postings written, seconds)."""
    users = [f"y{i}" for i in range(USERS)]
    for u in users:
        ledger.add_user(u, actor="bench")
    start = T0.replace(year=2025)
    gpu = ledger.add_price("gpu", Decimal("0.50"), Decimal(60), model_pattern="NVIDIA *", match="glob",
                           actor="bench", valid_from=start)
    cpu = ledger.add_price("cpu", Decimal("0.02"), Decimal(60), actor="bench", valid_from=start)
    codes = ["", *MODELS]
    accounts = ["revenues:cpu", *(f"revenues:gpu:{m.lower().replace(' ', '-')}" for m in MODELS)]
    with writing(ledger.engine) as conn:
        for code in accounts:
            conn.execute(text("INSERT INTO ledger.account (code, kind, currency) VALUES (:c, 'revenue', 'CNY')"
                              " ON CONFLICT DO NOTHING"), {"c": code})
        ids: dict[str, int] = dict(conn.execute(text("SELECT code, id FROM ledger.account")).all())
        user_ids: dict[str, int] = dict(conn.execute(text("SELECT name, id FROM ledger.billing_user")).all())
    rows_per_day = max(NODES * 2, postings // 2 // 365)
    params: dict[str, Any] = {
        "users": [user_ids[u] for u in users], "wallets": [ids[f"liabilities:wallet:user:{u}"] for u in users],
        "models": list(MODELS), "gpu_pv": gpu.id, "cpu_pv": cpu.id, "codes": codes,
        "revenue": [ids[a] for a in accounts]}
    t = time.perf_counter()
    for day in range(365):
        # whole ticks per day keep the rows of a day on that day (48 rows a tick: 24 nodes x GPU and CPU)
        ticks = rows_per_day // 48
        lo, hi = day * ticks * 48, (day + 1) * ticks * 48
        with writing(ledger.engine) as conn:
            mark = conn.execute(text("SELECT coalesce(max(id), 0) FROM ledger.usage")).scalar_one()
            entry_mark = conn.execute(text("SELECT coalesce(max(id), 0) FROM ledger.journal_entry")).scalar_one()
            conn.execute(text(_DAY_USAGE), {**params, "lo": lo, "hi": hi, "day": T0 + timedelta(days=day),
                                            "dayno": day, "ticks": ticks, "step": 86400 // ticks})
            conn.execute(text(_DAY_ENTRIES), {"mark": mark})
            conn.execute(text(_DAY_POSTINGS), {**params, "entry_mark": entry_mark})
    seconds = time.perf_counter() - t
    with reading(ledger.engine) as conn:
        written = conn.execute(text("SELECT count(*) FROM ledger.posting")).scalar_one()
    return int(written), seconds


def _raw_series(bucket: str, key: str, where: str = "") -> str:
    """The usage report's query (ledger.reports.usage) bucketed: what a page would ask without the rollup."""
    return ("SELECT date_trunc('" + bucket + "', u.interval_end, :tz), " + key + ", u.unit, sum(u.quantity),"  # noqa: S608
            " sum(u.amount), count(*) FROM ledger.usage u JOIN ledger.billing_user bu ON bu.id = u.user_id"
            " WHERE u.interval_end >= :lo AND u.interval_end < :hi" + where + " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3")


RAW = {
    "90-day chart, by model per day": _raw_series("day", "u.model"),
    "30-day chart, per user per day": _raw_series("day", "bu.name"),
    "top users, 30 days (GPU)": "SELECT bu.name, sum(u.quantity) q, sum(u.amount) FROM ledger.usage u JOIN"
                                " ledger.billing_user bu ON bu.id = u.user_id WHERE u.interval_end >= :lo AND"
                                " u.interval_end < :hi AND u.resource = 'gpu' GROUP BY 1 ORDER BY q DESC LIMIT 10",
    "charged per day, 90 days": "SELECT date_trunc('day', p.effective_at, :tz), -sum(p.amount) FROM ledger.posting p"
                                " JOIN ledger.account a ON a.id = p.account_id WHERE a.kind = 'revenue' AND"
                                " p.effective_at >= :lo AND p.effective_at < :hi GROUP BY 1 ORDER BY 1",
    "one user's 7 days, per resource per hour": _raw_series("hour", "u.resource", " AND bu.name = 'y7'"),
}


def questions(end: datetime) -> dict[str, tuple[timedelta, Callable[[Connection, datetime, datetime], object]]]:
    return {
        "90-day chart, by model per day": (timedelta(days=90), lambda c, lo, hi: rollup.usage_series(
            c, start=lo, end=hi, bucket="day", tz=TZ, by="model")),
        "30-day chart, per user per day": (timedelta(days=30), lambda c, lo, hi: rollup.usage_series(
            c, start=lo, end=hi, bucket="day", tz=TZ, by="user")),
        "top users, 30 days (GPU)": (timedelta(days=30), lambda c, lo, hi: rollup.top_users(
            c, start=lo, end=hi, limit=10)),
        "charged per day, 90 days": (timedelta(days=90), lambda c, lo, hi: rollup.charged_per_day(
            c, start=lo, end=hi, tz=TZ)),
        "one user's 7 days, per resource per hour": (timedelta(days=7), lambda c, lo, hi: rollup.usage_series(
            c, start=lo, end=hi, bucket="hour", tz=TZ, by="resource", user="y7")),
    }


def _percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return f"p50 {statistics.median(ordered) * 1000:8.1f} ms  p99 {p99 * 1000:8.1f} ms  (n={len(ordered)})"


def _timed(conn: Connection, runs: int, ask: Callable[[], object]) -> list[float]:
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        ask()
        samples.append(time.perf_counter() - t)
        conn.rollback()
    return samples


# Shanghai's offset (no DST either) under another name: the daily level is kept in TZ only, so a question asked in
# this zone is answered from the hourly level alone, with the same buckets: the control for the daily level.
HOURLY_ONLY_TZ = "Etc/GMT-8"


def time_pages(ledger: Ledger, runs: int, raw_runs: int) -> list[tuple[str, str]]:
    end = datetime(2026, 12, 31, 16, tzinfo=UTC)  # local midnight in Shanghai
    out = []
    with ledger.engine.connect() as conn:
        for name, (span, ask) in questions(end).items():
            lo = end - span
            samples = _timed(conn, runs, lambda: ask(conn, lo, end))  # noqa: B023 (called within the iteration)
            raw = _timed(conn, raw_runs, lambda: conn.execute(
                text(RAW[name]), {"lo": lo, "hi": end, "tz": TZ}).all())  # noqa: B023
            target = "50" if name.startswith("90-day chart") else "100"
            out.append((f"rollup: {name}", f"{_percentiles(samples)}  target p99 <= {target} ms"))
            out.append((f"raw:    {name}", _percentiles(raw)))
        lo = end - timedelta(days=90)
        daily = rollup.usage_series(conn, start=lo, end=end, bucket="day", tz=TZ, by="model")
        hourly = rollup.usage_series(conn, start=lo, end=end, bucket="day", tz=HOURLY_ONLY_TZ, by="model")
        if [(p.bucket, p.key, p.quantity, p.amount, p.records) for p in daily] != [
                (p.bucket, p.key, p.quantity, p.amount, p.records) for p in hourly]:
            raise RuntimeError("the 90-day chart differs between the daily level and the hourly level")
        samples = _timed(conn, runs, lambda: rollup.usage_series(conn, start=lo, end=end, bucket="day",
                                                                 tz=HOURLY_ONLY_TZ, by="model"))
        out.append(("hourly: 90-day chart, by model per day (control)", _percentiles(samples)))
    return out


# Parameters for the page rows' path templates and query variants (the generated year's user y7 and its wallet, a
# node of the generated registry, the month before the benchmark's "now"); by the path's first segment where a
# name means something else there. A page whose path names a parameter not here is reported untimed.
USER = "y7"
PATH = {"name": USER, "wallet": f"user:{USER}"}
PATH_UNDER = {"/nodes/": {"name": "reg0000"}}
VARIANTS: dict[str, tuple[dict[str, str], ...]] = {
    "/users/{name}/usage": ({"days": "7"}, {"days": "30"}, {"days": "90"}),
    "/users/{name}/statement": ({"from": "2026-11-01", "to": "2026-12-01"},
                                {"from": "2026-11-01", "to": "2026-12-01", "before": "0"}),
    "/nodes": ({}, {"page": "10"}, {"sort": "gpus"}),
    "/admin/audit": ({}, {"log": "api"}),
    # a download, not a page: one day's CSV, the time to its last byte
    "/admin/exports/file": ({"format": "csv", "from": "2026-11-30", "to": "2026-12-01"},),
}
ROLES = ("user", "admin")
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class ServerTimer:
    """The app wrapped so each request's server time (the ASGI call, response sent included) is recorded."""

    def __init__(self, app: Any) -> None:
        self.app, self.last = app, 0.0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        t = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.last = time.perf_counter() - t


async def _logged_in(client: httpx.AsyncClient, token: str) -> None:
    form = await client.get("/login")
    found = _CSRF.search(form.text)
    if form.status_code != 200 or found is None:
        raise RuntimeError(f"GET /login answered {form.status_code}")
    done = await client.post("/login", data={"csrf": found.group(1), "token": token, "next": "/"})
    if done.status_code != 303:
        raise RuntimeError(f"POST /login answered {done.status_code}: {done.text[:200]}")


def page_targets(found: dict[str, str]) -> tuple[list[tuple[str, str, dict[str, str]]], list[str]]:
    """(role, path, query) of every GET page row the mapping (with ``found``: ids read from the data set) can fill,
    and the rows it cannot."""
    timed: list[tuple[str, str, dict[str, str]]] = []
    untimed: list[str] = []
    for op in OPERATIONS:
        if not (op.page and op.method == "GET"):
            continue
        names = re.findall(r"{(\w+)}", op.path)
        known = {**PATH, **found, **next((v for k, v in PATH_UNDER.items() if op.path.startswith(k)), {})}
        if any(n not in known for n in names):
            untimed.append(f"{op.method} {op.path}")
            continue
        path = op.path.format(**{n: known[n] for n in names})
        roles = ("anonymous",) if op.public else tuple(r for r in ROLES if r in op.allowed_roles())
        timed.extend((role, path, query) for role in roles for query in VARIANTS.get(op.path, ({},)))
    return timed, untimed


REGISTRY = 1000


async def _timed_gets(client: httpx.AsyncClient, timer: ServerTimer, what: str, path: str, query: dict[str, str],
                      runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        answer = await client.get(path, params=query)
        if answer.status_code != 200:
            raise RuntimeError(f"GET {path} {query} as {what} answered {answer.status_code}")
        samples.append(timer.last)
    return samples


async def _time_pages(ledger: Ledger, runs: int) -> list[tuple[str, str]]:
    with writing(ledger.engine) as conn:
        issued = {role: tokens.issue(conn, name=f"bench-{role}-{time.time_ns()}", role=role,
                                     billing_user=USER if role == "user" else None, expires_at=None,
                                     created_by="bench").token
                  for role in ROLES}
    # The registry first: the node pages are timed over it.
    with writing(ledger.engine) as conn:
        sync_inventory(conn, [Node(name=f"reg{i:04d}", address=f"10.{i // 250}.{i % 250}.1") for i in range(REGISTRY)],
                       ControlTable(NODE_EDITS, "node edits"))
        # A connection test (pending: no controller runs here) and the user's newest usage entry, for their pages.
        found = {"test_id": str(connections.request(conn, "reg0000", "bench", "bench").id),
                 "entry_id": str(conn.execute(text(
                     "SELECT max(e.id) FROM ledger.journal_entry e JOIN ledger.usage u ON u.id = e.usage_id"
                     " JOIN ledger.billing_user b ON b.id = u.user_id WHERE b.name = :u"), {"u": USER}).scalar_one())}
    timer = ServerTimer(create_app(ledger, ApiConfig(auth_failures=100_000)))
    targets, untimed = page_targets(found)
    out: list[tuple[str, str]] = []
    clients = {role: httpx.AsyncClient(transport=httpx.ASGITransport(app=timer), base_url="https://bench")
               for role in (*ROLES, "anonymous")}
    try:
        for role in ROLES:
            await _logged_in(clients[role], issued[role])
        for role, path, query in targets:
            samples = await _timed_gets(clients[role], timer, role, path, query, runs)
            shown = path + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")
            out.append((f"page: GET {shown} ({role})", f"{_percentiles(samples)}  target p99 <= 100 ms"))
    finally:
        for client in clients.values():
            await client.aclose()
    out += [(f"page: {row}", "untimed: no parameters known") for row in untimed]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=timer), base_url="https://bench",
                                 headers={"Authorization": f"Bearer {issued['admin']}"}) as api:
        samples = await _timed_gets(api, timer, "admin", "/v1/nodes", {}, runs)
    out.append((f"api: GET /v1/nodes, {REGISTRY:,}-node registry (admin)",
                f"{_percentiles(samples)}  target p99 <= 100 ms"))
    return out


def time_console_pages(ledger: Ledger, runs: int) -> list[tuple[str, str]]:
    return asyncio.run(_time_pages(ledger, runs))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postings", type=int, default=10_000_000, help="postings in the generated year")
    parser.add_argument("--small", action="store_true", help="100,000 postings (overrides --postings)")
    parser.add_argument("--runs", type=int, default=30, help="timed runs of each rollup query")
    parser.add_argument("--raw-runs", type=int, default=3, help="timed runs of each raw query")
    parser.add_argument("--page-runs", type=int, default=30, help="timed requests of each console page")
    parser.add_argument("--keep", metavar="DIR", help="keep the database in DIR; reuse the year found there")
    args = parser.parse_args()
    postings = 100_000 if args.small else args.postings
    with tempfile.TemporaryDirectory(prefix="gpuledger-console-") as tmp:
        home = Path(args.keep) if args.keep else Path(tmp)
        marker = home / "generated.json"
        kept = json.loads(marker.read_text()) if marker.exists() else None
        if kept is not None and kept["asked"] != postings:
            parser.error(f"{home} holds a year of {kept['asked']:,} postings, not {postings:,}")
        cluster = EmbeddedPostgres(home / "pg").start()
        try:
            admin = bootstrap(cluster.url(), "bench")
            upgrade_all(admin, out=lambda _: None)
            config = LedgerConfig(database_url=Secret(cluster.url(user=APP_ROLE, database="bench")))
            engine = create_app_engine(config.database_url.reveal())
            ledger = Ledger(engine, config)
            if kept is None:
                written, load_s = generate(ledger, postings)
                kept = {"asked": postings, "written": written, "seconds": load_s}
                marker.write_text(json.dumps(kept))
            written, load_s = kept["written"], kept["seconds"]
            t = time.perf_counter()
            with writing(engine) as conn:  # what `gpuledger ledger rollup rebuild` does
                rollup.set_zone(conn, ZoneInfo(TZ))
                hourly = rollup.rebuild(conn)
            rebuild_s = time.perf_counter() - t
            owner = create_engine(admin, isolation_level="AUTOCOMMIT", poolclass=NullPool)
            with owner.connect() as conn:
                conn.execute(text("VACUUM ANALYZE"))
            owner.dispose()
            with reading(engine) as conn:
                usage_rows = conn.execute(text("SELECT count(*) FROM ledger.usage")).scalar_one()
            rows = [("year generated (SQL, app role, triggers on)",
                     f"{written:,} postings, {usage_rows:,} usage rows in {load_s:.1f} s"),
                    ("rollup rebuild (whole year, one transaction)", f"{hourly:,} hourly rows in {rebuild_s:.1f} s")]
            rows += time_pages(ledger, args.runs, args.raw_runs)
            rows += time_console_pages(ledger, args.page_runs)
            engine.dispose()
        finally:
            cluster.stop()
    print_rows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
