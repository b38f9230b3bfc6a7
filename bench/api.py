"""API latency under concurrent load on loopback: balance, a usage page and a statement.

Starts a throwaway PostgreSQL, migrates, seeds users, prices and a month of usage, serves the API with
uvicorn in a separate process (as in production), then sends requests open-loop at a fixed rate (so a slow
server cannot slow the load down and hide its latency) and prints p50/p99 and the achieved rate. Latency runs
from the moment a request was due, so time spent waiting for a free connection counts.

The load comes from a minimal HTTP/1.1 keep-alive client on raw asyncio streams: the server shares the two
cores with it, and httpx spent more CPU per request than the server did, which measured the client.

    .venv/bin/python bench/api.py [--rate 200] [--seconds 10] [--users 50] [--records 20000]
                                  [--only balance|usage|statement ...] [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api import tokens  # noqa: E402
from gpuledger.main import upgrade_all  # noqa: E402
from ledger.bootstrap import APP_ROLE, bootstrap  # noqa: E402
from ledger.config import LedgerConfig  # noqa: E402
from ledger.db import create_app_engine  # noqa: E402
from ledger.embedded import EmbeddedPostgres  # noqa: E402
from ledger.environ import Secret  # noqa: E402
from ledger.records import UsageRecord, UsageTick  # noqa: E402
from ledger.service import Ledger  # noqa: E402

T0 = datetime(2026, 3, 1, tzinfo=UTC)
CASES = (("balance", "balance", "/v1/wallets/u1/balance"), ("usage", "usage page (100)", "/v1/usage?limit=100"),
         ("statement", "statement (month)", "/v1/wallets/u1/statement?from=2026-03-01&to=2026-04-01"))


def seed(ledger: Ledger, users: int, records: int) -> None:
    ledger.add_price("gpu", Decimal("0.50"), Decimal(60), model_pattern="A100", actor="bench",
                     valid_from=T0 - timedelta(days=1))
    for i in range(users):
        ledger.add_user(f"u{i}", actor="bench")
        ledger.recharge(f"u{i}", 1_000_000_000, idem_key=f"bench-r{i}", actor="bench")
    per_tick = 50
    for t in range(records // per_tick):
        recs = tuple(UsageRecord(f"n1/b/{t}/{k}", f"u{k % users}", "gpu", Decimal(60), "gpu-second",
                                 T0 + timedelta(minutes=t), T0 + timedelta(minutes=t + 1), "bench",
                                 f"n1/b/u{k % users}/{k}", "A100", {"sample": f"{t}"}) for k in range(per_tick))
        ledger.post_usage(UsageTick("n1", recs))


Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def exchange(stream: Stream, request: bytes) -> int:
    """Send one request on a keep-alive connection and read the whole response; returns the status."""
    reader, writer = stream
    writer.write(request)
    status = int((await reader.readline()).split()[1])
    length = None
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length is None:
        raise RuntimeError("the bench client reads Content-Length responses only")
    await reader.readexactly(length)
    return status


async def load(port: int, token: str, path: str, rate: float, seconds: float) -> tuple[list[float], int, float]:
    request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n").encode()
    latencies: list[float] = []
    errors = 0
    idle: list[Stream] = []
    slots = asyncio.Semaphore(64)   # connections at most, like a client's pool

    async def one(due: float) -> None:
        nonlocal errors
        async with slots:
            try:
                stream = idle.pop() if idle else await asyncio.open_connection("127.0.0.1", port)
                status = await exchange(stream, request)
            except (IndexError, ConnectionError):   # the server closed a keep-alive connection idle too long
                stream = await asyncio.open_connection("127.0.0.1", port)
                status = await exchange(stream, request)
            latencies.append(time.perf_counter() - due)
            errors += status != 200
            idle.append(stream)

    tasks = []
    start = time.perf_counter()
    for i in range(int(rate * seconds)):
        due = start + i / rate
        if (delay := due - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    for _, writer in idle:
        writer.close()
    return latencies, errors, len(latencies) / elapsed


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000 if len(values) > 1 else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--only", choices=("balance", "usage", "statement"), action="append",
                        help="run only these endpoints (repeatable); default all three")
    parser.add_argument("--runs", type=int, default=1, help="runs of each endpoint, one after the other")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cluster = EmbeddedPostgres(Path(tmp) / "pg").start()
        server = None
        try:
            admin = bootstrap(cluster.url(), "bench")
            upgrade_all(admin, out=lambda line: None)   # every chain, as deployed
            app_url = cluster.url(user=APP_ROLE, database="bench")
            engine = create_app_engine(app_url)
            ledger = Ledger(engine, LedgerConfig(database_url=Secret(app_url)))
            t = time.perf_counter()
            seed(ledger, args.users, args.records)
            print(f"seeded {args.users} users, {args.records} usage records in {time.perf_counter() - t:.1f} s")
            with engine.begin() as conn:
                token = tokens.issue(conn, name="bench", role="user", billing_user="u1", expires_at=None,
                                     created_by="bench").token
            engine.dispose()
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            sock.close()
            env = {**os.environ, "GPULEDGER_DATABASE_URL": app_url, "PYTHONPATH": str(ROOT)}
            server = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "api.app:create_app_from_env", "--factory", "--host", "127.0.0.1",
                 "--port", str(port), "--log-level", "warning", "--no-access-log"], env=env, cwd=ROOT)
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(base + "/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline and server.poll() is None, "the API did not start"
                time.sleep(0.1)
            cases = [(name, path) for key, name, path in CASES if key in (args.only or [k for k, _, _ in CASES])]
            print(f"\n{args.rate:.0f} req/s offered for {args.seconds:.0f} s each, open loop, one uvicorn worker;"
                  f" load: the 1-minute load average after the row\n")
            print(f"{'endpoint':<20} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'errors':>7} {'load':>6}")
            asyncio.run(load(port, token, cases[0][1], 50, 1))   # warm-up: connections, caches
            for name, path in [case for case in cases for _ in range(args.runs)]:
                latencies, errors, achieved = asyncio.run(load(port, token, path, args.rate, args.seconds))
                print(f"{name:<20} {achieved:>8.1f} {_pct(latencies, 50):>8.1f} {_pct(latencies, 99):>8.1f}"
                      f" {max(latencies) * 1000:>8.1f} {errors:>7} {os.getloadavg()[0]:>6.2f}")
        finally:
            if server is not None:
                server.terminate()
                server.wait(10)
            cluster.stop(mode="immediate")
    return 0


if __name__ == "__main__":
    sys.exit(main())
