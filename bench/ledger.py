"""Ledger benchmark: one command, prints a table.

    .venv/bin/python bench/ledger.py                 # ticks + a full-size year (>= 10 million postings)
    .venv/bin/python bench/ledger.py --year-scale 0.05   # a smaller year, for a quick look
    .venv/bin/python bench/ledger.py --skip-year --connections 2 4 8   # the tick path, also in parallel

1. Ticks: 1,000 nodes x 5 users x 3 resources through ``Ledger.post_usage`` (the controller's idempotent
   path, one transaction per node), then the same ticks replayed (must create nothing); with
   ``--connections N [N ...]`` another minute's ticks from N threads in parallel, for each N.
2. A generated year of a 24-node lab loaded with COPY (through the app role's triggers: balance cache and
   checks run as in production), then a user's monthly statement, the trial balance, ``audit verify`` (every
   check, each entry's payload hash included), and full exports (CSV, hledger, Beancount) to /dev/null with the
   process's peak memory.

It starts its own throwaway PostgreSQL (ledger.embedded) under a temporary directory.
"""

from __future__ import annotations

import argparse
import io
import resource
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from bench.table import print_rows
from ledger import journal
from ledger.bootstrap import APP_ROLE, bootstrap
from ledger.config import LedgerConfig
from ledger.db import WRITER_LOCK, create_app_engine
from ledger.embedded import EmbeddedPostgres
from ledger.environ import Secret
from ledger.migrate import upgrade_ledger
from ledger.money import MICRO
from ledger.records import UsageRecord, UsageTick
from ledger.service import Ledger

T0 = datetime(2026, 1, 1, tzinfo=UTC)
MODEL = "NVIDIA A100-SXM4-80GB"


def setup_prices(ledger: Ledger) -> None:
    ledger.add_price("gpu", Decimal("0.50"), Decimal(60), model_pattern="NVIDIA A100*", match="glob", actor="bench",
                     valid_from=T0)
    ledger.add_price("cpu", Decimal("0.02"), Decimal(60), actor="bench", valid_from=T0)
    ledger.add_price("memory", Decimal("0.001"), Decimal(3600), actor="bench", valid_from=T0)


def tick(node: int, users: list[str], minute: int) -> UsageTick:
    start = T0 + timedelta(minutes=minute)
    end = start + timedelta(minutes=1)
    records = []
    for u in users:
        for resource_name, unit, qty, model in (("gpu", "gpu-second", "60", MODEL), ("cpu", "core-second", "93.25", ""),
                                                ("memory", "GiB-second", "734.5", "")):
            records.append(UsageRecord(
                idem_key=f"n{node}/boot/{minute}/{u}/{resource_name}", linux_user=u, resource=resource_name,
                quantity=Decimal(qty), unit=unit, interval_start=start, interval_end=end, method="bench",
                epoch=f"n{node}/boot/{u}/{resource_name}", model=model, evidence={"sample": f"n{node}/{minute}"}))
    return UsageTick(node=f"n{node:04d}", records=tuple(records))


def post_in_parallel(ledger: Ledger, ticks: list[UsageTick], connections: int) -> tuple[int, float]:
    """Post ``ticks`` one transaction per node from ``connections`` threads (each its own pooled connection);
    returns (postings created, seconds)."""
    def run(share: list[UsageTick]) -> int:
        return sum(2 * r.postings_created for r in map(ledger.post_usage, share))

    t = time.perf_counter()
    with ThreadPoolExecutor(connections) as pool:
        created = sum(pool.map(run, [ticks[i::connections] for i in range(connections)]))
    return created, time.perf_counter() - t


def bench_ticks(ledger: Ledger, nodes: int, batch: int, connections: list[int]) -> list[tuple[str, str]]:
    users = [f"u{i}" for i in range(5)]
    for u in users:
        ledger.add_user(u, actor="bench")
        ledger.recharge(u, 10_000 * MICRO, idem_key=f"seed/{u}", actor="bench")
    ticks = [tick(n, users, 0) for n in range(nodes)]
    created, first = post_in_parallel(ledger, ticks, 1)
    t = time.perf_counter()
    replayed = sum(2 * r.postings_created for r in map(ledger.post_usage, ticks))
    replay = time.perf_counter() - t
    assert replayed == 0, "a replay created postings"
    rows = [
        ("ticks: nodes x users x resources", f"{nodes} x 5 x 3 (gpu, cpu, memory), every record charged"),
        ("ticks, one transaction per node: postings", f"{created:,} in {first:.2f} s"),
        ("ticks, one transaction per node: postings/s", f"{created / first:,.0f} (target >= 20,000)"),
        ("ticks, one transaction per node: transactions/s", f"{nodes / first:,.0f}"),
        ("replay of the same ticks: postings created", f"{replayed}"),
        ("replay of the same ticks: transactions/s", f"{nodes / replay:,.0f}"),
    ]
    for minute, n in enumerate(connections, start=2):
        created, seconds = post_in_parallel(ledger, [tick(k, users, minute) for k in range(nodes)], n)
        rows.append((f"ticks, one transaction per node, {n} connections: postings/s",
                     f"{created / seconds:,.0f} ({nodes / seconds:,.0f} tx/s)"))
    later = [tick(n, users, 1) for n in range(nodes)]
    t = time.perf_counter()
    batched = sum(2 * r.postings_created for i in range(0, nodes, batch)
                  for r in ledger.post_usage_batch(later[i:i + batch]))
    in_batches = time.perf_counter() - t
    rows.append((f"ticks, {batch} nodes per transaction: postings/s", f"{batched / in_batches:,.0f}"
                 f" ({batched:,} in {in_batches:.2f} s)"))
    return rows


def load_year(ledger: Ledger, postings_target: int) -> tuple[int, float]:
    """A 24-node lab's synthetic year: two-posting charges (a user's wallet debited, a GPU revenue account
    credited) spread evenly over 2026, one transaction per day. Entries are COPYed, postings derived in SQL,
    through the app role, so every trigger (balance cache, reference and balance checks, seal) runs."""
    users = [f"y{i}" for i in range(40)]
    for u in users:
        ledger.add_user(u, actor="bench")
    with ledger.engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": WRITER_LOCK})
        conn.execute(text("INSERT INTO ledger.account (code, kind, currency) VALUES"
                          " ('revenues:gpu:nvidia-a100-sxm4-80gb', 'revenue', 'CNY') ON CONFLICT DO NOTHING"))
        ids = dict(conn.execute(text("SELECT code, id FROM ledger.account")).all())
    codes = [f"liabilities:wallet:user:{u}" for u in users]
    wallets = [ids[code] for code in codes]
    revenue_code = "revenues:gpu:nvidia-a100-sxm4-80gb"
    revenue = ids[revenue_code]
    per_day = max(1, postings_target // 2 // 365)

    def amount_of(n: int) -> int:
        return 1000 + n % 997

    def digest(n: int) -> bytes:
        # the payload hash audit verify recomputes: an adjustment's (with no counter account: counter None)
        return journal.sha256_of(journal.payload("adjustment", [(codes[n % len(codes)], amount_of(n)),
                                                                (revenue_code, -amount_of(n))], None,
                                                 {"counter": None}))
    t = time.perf_counter()
    raw = ledger.engine.raw_connection()
    try:
        pg = raw.driver_connection
        assert pg is not None
        for day in range(365):
            start = T0 + timedelta(days=day)
            cur = pg.cursor()
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (WRITER_LOCK,))
            last = cur.execute("SELECT coalesce(max(id), 0) FROM ledger.journal_entry").fetchone()[0]
            with cur.copy("COPY ledger.journal_entry (idem_key, payload_sha256, kind, effective_at, actor, memo)"
                          " FROM STDIN") as copy:
                for k in range(per_day):
                    copy.write_row((f"year/{day * per_day + k}", digest(day * per_day + k), "adjustment",
                                    start + timedelta(seconds=86400 * k // per_day), "bench", "generated charge"))
            rows = cur.execute("SELECT id, idem_key, effective_at FROM ledger.journal_entry WHERE id > %s",
                               (last,)).fetchall()
            with cur.copy("COPY ledger.posting (entry_id, line, account_id, amount, effective_at) FROM STDIN") as copy:
                for entry_id, key, when in rows:
                    n = int(key.split("/")[1])
                    amount = amount_of(n)
                    copy.write_row((entry_id, 1, wallets[n % len(wallets)], amount, when))
                    copy.write_row((entry_id, 2, revenue, -amount, when))
            cur.execute("SELECT ledger.seal_block()")
            pg.commit()
    finally:
        raw.close()
    return per_day * 365 * 2, time.perf_counter() - t


def timed(fn: object) -> float:
    t = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - t


class _Null(io.TextIOBase):
    def write(self, s: str) -> int:
        return len(s)


def bench_year(ledger: Ledger, admin_url: str, scale: float, exports: bool) -> list[tuple[str, str]]:
    postings, load_s = load_year(ledger, int(10_000_000 * scale) + 2)
    # what autovacuum would have done by then (visibility map for index-only scans, statistics)
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with engine.connect() as conn:
        conn.execute(text("VACUUM ANALYZE"))
    engine.dispose()
    rows = [("year: postings loaded (COPY, app role, triggers on)", f"{postings:,} in {load_s:.1f} s"
             f" ({postings / load_s:,.0f}/s)")]
    rows.append(("year: statement, one user, one month",
                 f"{timed(lambda: ledger.statement('y7', date(2026, 6, 1), date(2026, 7, 1))):.3f} s (target <= 1 s)"))
    rows.append(("year: statement, one user, whole year",
                 f"{timed(lambda: ledger.statement('y7', date(2026, 1, 1), date(2027, 1, 1))):.3f} s"))
    rows.append(("year: trial balance (now)", f"{timed(ledger.trial_balance):.3f} s (target <= 1 s)"))
    rows.append(("year: trial balance at a date",
                 f"{timed(lambda: ledger.trial_balance(date(2026, 7, 1))):.3f} s"))
    t = time.perf_counter()
    report = ledger.verify()
    rows.append(("year: audit verify (every check)", f"{time.perf_counter() - t:.1f} s,"
                 f" {len(report.problems)} problems"))
    for fmt in ("csv", "hledger", "beancount") if exports else ():
        seconds = timed(lambda fmt=fmt: ledger.export(fmt, _Null()))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rows.append((f"year: export {fmt} (to /dev/null)", f"{seconds:.1f} s, {postings / seconds:,.0f} postings/s,"
                     f" process peak RSS {peak:.0f} MiB"))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=50, help="nodes per transaction in the batched run")
    parser.add_argument("--connections", type=int, nargs="*", default=[], metavar="N",
                        help="also post a minute's ticks (one transaction per node) from N connections in parallel,"
                             " once per N given (at most 10: the engine's pool)")
    parser.add_argument("--year-scale", type=float, default=1.0, help="fraction of the 10-million-posting year")
    parser.add_argument("--skip-year", action="store_true")
    parser.add_argument("--skip-exports", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gpuledger-bench-") as tmp:
        cluster = EmbeddedPostgres(Path(tmp) / "pg").start()
        try:
            admin = bootstrap(cluster.url(), "bench")
            upgrade_ledger(admin)
            config = LedgerConfig(database_url=Secret(cluster.url(user=APP_ROLE, database="bench")))
            engine = create_app_engine(config.database_url.reveal())
            ledger = Ledger(engine, config)
            setup_prices(ledger)
            rows = bench_ticks(ledger, args.nodes, args.batch, args.connections)
            peak_before_year = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            rows.append(("process peak RSS before the year", f"{peak_before_year:.0f} MiB"))
            if not args.skip_year:
                rows += bench_year(ledger, admin, args.year_scale, not args.skip_exports)
            engine.dispose()
        finally:
            cluster.stop()
    print_rows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
