"""Controller sweep time and CPU per tick for 24, 200 and 1,000 nodes, ledger writes included.

    .venv/bin/python bench/controller.py [--nodes 24,200,1000] [--ticks 3]

Nodes are simulated by asyncssh servers in a separate, spawned process (so the controller's CPU figure,
``time.process_time()`` of the controller's process, all its threads included, is its own: neither the
simulated fleet's nor PostgreSQL's) answering the node-command verbs with realistic samples: 8 GPUs,
40 user processes of 10 users, 6 of them on GPUs, cumulative CPU counters that advance. The controller is
the real one: SSH with pinned host keys and persistent connections, batched database transactions through
the ledger's usage path, standings, convergence and status files. No memory price is set (memory pricing
is optional), so each node and tick makes 26 records: 10 CPU, 6 GPU and 10 memory records that the ledger
returns as skipped (16 ledger entries). PostgreSQL is a throwaway local
cluster. Prints a table: the first tick (connections opened, baselines) and the steady ticks after it
(charging), with the CPU the garbage collector took in the worst steady tick, and the decision phase's
database round trips in the worst steady tick (transactions begun and statements sent after charging:
resolving users, standings, burn rates, tier states; no user is restricted here, so no decision rows).
The controller tunes the garbage collector as ``gpuledger controller run`` does (``collector.app.tune_gc``);
``--gc-threshold N`` sets another first-generation threshold (700 is Python's default) to measure what the
tuning saves. ``--queue`` runs the GPU queue's driver in every tick (``GPULEDGER_QUEUE=true``: the drop box read
on the nodes whose sample counts something waiting, one in a hundred here, the queue's transaction, answers,
masks) on ``--requests`` pending requests filed before the first tick; the simulated nodes keep each user's GPU
mask, as a real node does.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import asyncssh  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402
from sqlalchemy import Engine, create_engine, event  # noqa: E402

from collector.app import tune_gc  # noqa: E402
from collector.charging.deltas import UsageSettings  # noqa: E402
from collector.charging.posting import Charger  # noqa: E402
from collector.config import TierPolicy  # noqa: E402
from collector.metrics import Metrics  # noqa: E402
from collector.nodes.transport.ssh import SshSettings, SshTransport  # noqa: E402
from collector.tick import Controller  # noqa: E402
from collector.types import Node, QueueSettings, TickSettings  # noqa: E402
from control.queue import store  # noqa: E402
from gpuledger.main import upgrade_all  # noqa: E402
from ledger.bootstrap import bootstrap  # noqa: E402
from ledger.config import LedgerConfig  # noqa: E402
from ledger.embedded import EmbeddedPostgres  # noqa: E402
from ledger.environ import Secret  # noqa: E402
from ledger.money import MICRO  # noqa: E402
from ledger.service import Ledger  # noqa: E402

USERS = [f"bench{n:02d}" for n in range(10)]
MODEL = "NVIDIA A100-SXM4-80GB"
HZ = 100
WAITING_EVERY = 100


def sample_document(node: int, boot_ns: int) -> bytes:
    """A realistic sample of simulated node ``node``, ``boot_ns`` after its boot."""
    seconds = boot_ns / 1e9
    processes, gpu_processes = [], []
    for n in range(40):
        uid = 2000 + n % 10
        pid = 10_000 + n
        processes.append({
            "pid": pid, "ppid": 1, "uid": uid, "user": USERS[n % 10], "start_ticks": 100 + n, "create_time_ms": 0,
            "state": "R", "cpu_user_ticks": int(seconds * HZ * 0.5), "cpu_system_ticks": 0, "rss_bytes": 1 << 30,
            "name": "python",
        })
        if n < 6:
            gpu_processes.append({"gpu_uuid": f"GPU-{node:04d}-{n}", "device_uuid": f"GPU-{node:04d}-{n}", "pid": pid,
                                  "type": "compute", "used_memory_bytes": 8 << 30, "start_ticks": 100 + n, "uid": uid,
                                  "user": USERS[n % 10]})
    gpus = [{
        "index": g, "uuid": f"GPU-{node:04d}-{g}", "name": MODEL, "memory_total_bytes": 80 << 30,
        "memory_used_bytes": 8 << 30 if g < 6 else 0, "mig_mode": "disabled", "accounting_mode": False,
        "utilization_gpu_percent": 90 if g < 6 else 0, "utilization_memory_percent": 30, "temperature_c": 60,
        "power_mw": 250_000, "ecc_volatile_corrected": 0, "ecc_volatile_uncorrected": 0, "mig_devices": [],
    } for g in range(8)]
    boot_wall = 1_764_000_000_000_000_000
    document = {
        "schema_version": 1, "probe_version": "0.1.0",
        "node": {"machine_id": f"{node:032x}", "boot_id": f"00000000-0000-4000-8000-{node:012x}",
                 "hostname": f"sim{node:04d}", "kernel": "6.1.0", "wall_time_ns": time.time_ns(),
                 "monotonic_ns": boot_ns, "boottime_ns": boot_ns, "boot_time": boot_wall // 10**9,
                 "clock_ticks_per_second": HZ, "page_size": 4096, "uid_min": 1000},
        "hardware": {"cpu": {"model": "EPYC", "logical_cpus": 128, "physical_cores": 64, "sockets": 2},
                     "memory": {"total_bytes": 1 << 40, "available_bytes": 1 << 39}, "disks": [], "nvidia": None},
        "gpus": gpus, "gpu_processes": gpu_processes, "gpu_accounting": [], "process_count": 400,
        "processes": processes,
        "user_cpu": [{"uid": 2000 + u, "user": USERS[u], "usage_ns": int(boot_ns * 2), "source": "cgroup-v2"}
                     for u in range(10)],
        # One node in a hundred has something in its drop box each sample (answered as an empty box): the
        # queue's read is asked there only, as a real probe's count makes it.
        "gpu_requests_waiting": int(node % WAITING_EVERY == 0),
        "degraded": [],
    }
    return json.dumps(document).encode()


class _Node(asyncssh.SSHServer):
    def begin_auth(self, username: str) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return True


def _serve(count: int, host_key_path: str, client_pub: str, ports: Any, started: float) -> None:
    """The simulated fleet (child process): one asyncssh server per node on 127.0.0.1."""

    masks: dict[tuple[int, str], list[int]] = {}  # (node, uid) -> the GPU minors denied by the queue's mask

    async def main() -> None:
        key = asyncssh.read_private_key(host_key_path)
        authorized = asyncssh.import_authorized_keys(client_pub)

        def handler(node: int):  # one process factory per node, so a sample knows which node it is
            async def handle(process: asyncssh.SSHServerProcess) -> None:
                words = (process.command or "").split()
                verb = words[0] if words else ""
                if verb == "sample":
                    process.stdout.write(sample_document(node, int((time.monotonic() - started) * 1e9) + 10**12))
                elif verb == "status-write":
                    await process.stdin.read()
                    process.stdout.write(b'{"ok":true,"changed":true}\n')
                elif verb == "quota-get":
                    process.stdout.write(b'{"ok":true,"quota_ppm":null}\n')
                elif verb == "gpu-state":
                    minors = masks.get((node, words[1]))
                    process.stdout.write(json.dumps({"ok": True, "blocked": minors is not None,
                                                     "denied_minors": minors or []}).encode())
                elif verb == "gpu-block" and "--minors" in words:
                    masks[(node, words[1])] = sorted(int(m) for m in words[-1].split(","))
                    process.stdout.write(b'{"ok":true,"changed":true}\n')
                elif verb == "gpu-unblock":
                    masks.pop((node, words[1]), None)
                    process.stdout.write(b'{"ok":true,"changed":true}\n')
                elif verb == "gpu-requests":
                    process.stdout.write(b'{"ok":true,"present":true,"more":false,"requests":[],"refused":[]}\n')
                elif verb in ("queue-status", "notify"):
                    await process.stdin.read()
                    process.stdout.write(b'{"ok":true,"changed":true}\n')
                else:
                    process.stdout.write(b'{"ok":true,"changed":false}\n')
                process.exit(0)
            return handle

        listening = []
        for node in range(count):
            server = await asyncssh.create_server(
                _Node, "127.0.0.1", 0, server_host_keys=[key], authorized_client_keys=authorized,
                process_factory=handler(node), encoding=None,
            )
            listening.append(server.sockets[0].getsockname()[1])
        ports.put(listening)
        await asyncio.Event().wait()

    asyncio.run(main())


class _GcClock:
    """CPU seconds the cyclic garbage collector has run (in whichever thread it ran)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.thread_time()
        else:
            self.seconds += time.thread_time() - self._started


class _RoundTrips:
    """Database round trips of the decision phase (everything the controller's ``_enforce`` step does after
    the charging phase: resolving users, standings, burn rates, tier states, the decision log), counted from
    SQLAlchemy's events on the controller's engine: transactions begun and statements sent. The charging
    phase's raw psycopg calls (the ledger's batch path) bypass these events; they are not counted here."""

    def __init__(self, engine: Engine) -> None:
        self.deciding = False
        self.transactions = 0
        self.statements = 0
        event.listen(engine, "begin", self._begin)
        event.listen(engine, "before_cursor_execute", self._statement)

    def _begin(self, conn: Any) -> None:
        self.transactions += self.deciding

    def _statement(self, *args: Any) -> None:
        self.statements += self.deciding

    def wrap(self, step: Any) -> Any:
        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.deciding = True
            try:
                return await step(*args, **kwargs)
            finally:
                self.deciding = False
        return counted

    def take(self) -> tuple[int, int]:
        taken = self.transactions, self.statements
        self.transactions = self.statements = 0
        return taken


def _database(workdir: Path) -> tuple[EmbeddedPostgres, str]:
    server = EmbeddedPostgres(workdir / "pg").start()
    admin = bootstrap(server.url(), "gpuledger_bench")
    upgrade_all(admin, out=lambda line: None)   # every chain, as deployed: each tick reads control's settings
    return server, server.url(user="gpuledger_app", database="gpuledger_bench")


async def _sweep(count: int, ticks: int, workdir: Path, app_url: str, collector: _GcClock,
                 queue: QueueSettings | None) -> dict[str, float]:
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    (workdir / "client").write_bytes(client_key.export_private_key())
    (workdir / "host").write_bytes(host_key.export_private_key())
    context = multiprocessing.get_context("spawn")
    answer = context.Queue()
    fleet = context.Process(
        target=_serve,
        args=(count, str(workdir / "host"), client_key.export_public_key().decode(), answer, time.monotonic()),
        daemon=True,
    )
    fleet.start()
    ports = await asyncio.to_thread(answer.get)
    public = host_key.export_public_key().decode().split()[:2]
    (workdir / "known_hosts").write_text("".join(f"[127.0.0.1]:{p} {' '.join(public)}\n" for p in ports))
    nodes = [Node(f"sim{n:04d}", "127.0.0.1", port=p, ssh_user="gpuledger") for n, p in enumerate(ports)]
    engine = create_engine(app_url, pool_size=8, max_overflow=4)
    ledger_config = LedgerConfig(database_url=Secret(app_url))
    transport = SshTransport(SshSettings(workdir / "client", workdir / "known_hosts"))
    controller = Controller(
        engine=engine, ledger=Ledger(engine, ledger_config), ledger_config=ledger_config,
        transports=lambda node: transport, charger=Charger(engine, "CNY", UsageSettings()),
        settings=TickSettings(budget_s=45, concurrency=64, queue=queue), policy=TierPolicy(),
        metrics=Metrics(CollectorRegistry()),
    )
    trips = _RoundTrips(engine)
    controller._enforce = trips.wrap(controller._enforce)  # type: ignore[method-assign]
    rows: dict[str, float] = {}
    try:
        for n in range(ticks + 1):
            if n:
                await asyncio.sleep(1.0)
            cpu, wall, collected = time.process_time(), time.monotonic(), collector.seconds
            summary = await controller.tick(nodes)
            cpu, wall = time.process_time() - cpu, time.monotonic() - wall
            transactions, statements = trips.take()
            assert summary.outcomes == {"ok": count} and summary.database_ok, summary
            key = "first" if n == 0 else "steady"
            rows[f"{key}_wall"] = max(rows.get(f"{key}_wall", 0.0), wall)
            rows[f"{key}_cpu"] = max(rows.get(f"{key}_cpu", 0.0), cpu)
            if n:
                rows["entries"] = summary.entries
                rows["steady_gc"] = max(rows.get("steady_gc", 0.0), collector.seconds - collected)
                rows["decide_tx"] = max(rows.get("decide_tx", 0.0), transactions)
                rows["decide_stmts"] = max(rows.get("decide_stmts", 0.0), statements)
    finally:
        await transport.aclose()
        controller.close()
        engine.dispose()
        fleet.kill()
        fleet.join()
    return rows


def _file_requests(engine: Engine, count: int) -> None:
    """``count`` pending one-GPU requests of any model, spread over the bench's users, as if filed on nodes."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        for n in range(count):
            filed = store.NewRequest(user=USERS[n % len(USERS)], project=None, nonce=f"bench-request-{n:06d}",
                                     models=(), count=1, hours=Decimal(4))
            store.submit(conn, filed, now=now)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="24,200,1000")
    parser.add_argument("--ticks", type=int, default=3, help="steady ticks per size (the worst one is reported)")
    parser.add_argument("--queue", action="store_true", help="run the GPU queue's driver in every tick")
    parser.add_argument("--requests", type=int, default=500,
                        help="with --queue: pending requests before the first tick")
    parser.add_argument("--gc-threshold", type=int,
                        help="the garbage collector's first-generation threshold instead of the controller's"
                             " (collector.app.tune_gc); 700 is Python's default")
    args = parser.parse_args()
    tune_gc()
    if args.gc_threshold is not None:
        gc.set_threshold(args.gc_threshold, 20, 20)
    collector = _GcClock()
    with tempfile.TemporaryDirectory(prefix="gpuledger-bench-", dir="/var/tmp") as tmp:
        workdir = Path(tmp)
        os.chmod(workdir, 0o755)
        server, app_url = _database(workdir)
        try:
            setup = Ledger(create_engine(app_url), LedgerConfig(database_url=Secret(app_url)))
            setup.add_price("gpu", Decimal("0.36"), Decimal(3600), model_pattern=MODEL, actor="bench",
                            valid_from=datetime(2020, 1, 1, tzinfo=UTC))
            setup.add_price("cpu", Decimal("0.036"), Decimal(3600), actor="bench",
                            valid_from=datetime(2020, 1, 1, tzinfo=UTC))
            for user in USERS:
                setup.add_user(user, actor="bench")
                setup.recharge(user, 10**9 * MICRO, idem_key=f"bench-{user}", actor="bench")
            if args.queue:
                _file_requests(setup.engine, args.requests)
            setup.engine.dispose()
            print(f"{'nodes':>6} {'first tick s':>13} {'first CPU s':>12} {'steady tick s':>14} {'steady CPU s':>13}"
                  f" {'of it GC s':>11} {'entries/tick':>13} {'decide tx':>10} {'decide stmts':>13}")
            for count in (int(n) for n in args.nodes.split(",")):
                r = asyncio.run(_sweep(count, args.ticks, workdir, app_url, collector,
                                       QueueSettings() if args.queue else None))
                print(f"{count:>6} {r['first_wall']:>13.2f} {r['first_cpu']:>12.2f} {r['steady_wall']:>14.2f}"
                      f" {r['steady_cpu']:>13.2f} {r['steady_gc']:>11.2f} {int(r['entries']):>13}"
                      f" {int(r['decide_tx']):>10} {int(r['decide_stmts']):>13}", flush=True)
        finally:
            server.stop(mode="immediate")
    return 0


if __name__ == "__main__":
    sys.exit(main())
