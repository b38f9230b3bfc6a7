"""Assembling a running controller from configuration, and the one call ``gpuledger run`` embeds.

``Runtime`` owns what it creates (engine, transports, thread pool, lease) and closes it. SSH is set up
only when the inventory has SSH nodes, so the embedded default (one local node) needs no key.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

from prometheus_client import CollectorRegistry, start_http_server
from sqlalchemy import Engine, create_engine

from collector import anchor
from collector.anchor import AnchorLog
from collector.charging.deltas import UsageSettings
from collector.charging.posting import Charger
from collector.config import ControllerConfig
from collector.enforcing.notices import Notifier
from collector.metrics import Metrics, WalletBalances, read_wallet_figures
from collector.nodes.conntest import ConnectionTests
from collector.nodes.inventory import load_inventory
from collector.nodes.lease import Lease
from collector.nodes.transport.abc import Transport
from collector.nodes.transport.local import LocalTransport
from collector.nodes.transport.ssh import SshSettings, SshTransport
from collector.nodes.weblogin import WebLoginPoller
from collector.scheduler import TickLoop
from collector.tick import Controller
from collector.types import Node, TickSettings, TickSummary
from ledger.config import LedgerConfig
from ledger.environ import Secret
from ledger.service import Ledger

log = logging.getLogger("gpuledger.controller")


class InventoryFile:
    """The inventory, re-read when its file (or a file in its directory) changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[float, ...] | None = None
        self._nodes: tuple[Node, ...] = ()

    def _current_stamp(self) -> tuple[float, ...]:
        files = [self.path, *sorted(self.path.rglob("*"))] if self.path.is_dir() else [self.path]
        return tuple(f.stat().st_mtime for f in files if f.exists())

    def __call__(self) -> tuple[Node, ...]:
        stamp = self._current_stamp()
        if stamp != self._stamp:
            self._nodes = load_inventory(self.path)
            self._stamp = stamp
        return self._nodes


class Transports:
    """The local transport and an SSH one made on first use, for one user of the nodes (the ticks, the connection
    tests, the web-login poller): each user's sessions are its own."""

    def __init__(self, local_node_command: Sequence[str], new_ssh: Callable[[], SshTransport]) -> None:
        self._local = LocalTransport(local_node_command)
        self._new_ssh = new_ssh
        self._ssh: SshTransport | None = None

    def __call__(self, node: Node) -> Transport:
        if node.local:
            return self._local
        if self._ssh is None:
            self._ssh = self._new_ssh()
        return self._ssh

    async def aclose(self) -> None:
        if self._ssh is not None:
            await self._ssh.aclose()
        await self._local.aclose()


@dataclass
class Runtime:
    config: ControllerConfig
    ledger_config: LedgerConfig
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    name: str = field(default_factory=lambda: f"{os.uname().nodename}:{os.getpid()}")

    def __post_init__(self) -> None:
        self.engine: Engine = create_engine(self.config.database_url.reveal(), pool_size=6, max_overflow=4,
                                            pool_pre_ping=True)
        self.lease_engine: Engine = create_engine(self.config.database_url.reveal(), pool_size=1, max_overflow=0)
        self.ledger = Ledger(self.engine, self.ledger_config)
        self.metrics = Metrics(self.registry)
        self.metrics.tick_budget.set(self.config.tick_budget_s)
        if self.config.metrics_wallets:
            self.registry.register(WalletBalances(partial(read_wallet_figures, self.engine),
                                                  self.config.metrics_wallets))
        self.inventory = InventoryFile(self.config.inventory)
        self.transport = Transports(self.config.local_node_command, self._new_ssh)
        # Connection tests get transports of their own: a test opens and closes its own connection. The
        # web-login poller keeps its own sessions, so neither's discard breaks another's command.
        self.test_transport = Transports(self.config.local_node_command, self._new_ssh)
        self.login_transport = Transports(self.config.local_node_command, self._new_ssh)
        self.controller = Controller(
            engine=self.engine,
            ledger=self.ledger,
            ledger_config=self.ledger_config,
            transports=self.transport,
            charger=Charger(self.engine, self.ledger_config.currency,
                            UsageSettings(max_gap_s=self.config.max_gap_s, gpu_split=self.config.gpu_split),
                            reservations=self.config.queue is not None),
            settings=TickSettings(
                budget_s=self.config.tick_budget_s,
                command_timeout_s=self.config.command_timeout_s,
                concurrency=self.config.concurrency,
                dry_run=self.config.dry_run,
                skew_threshold_s=self.config.skew_threshold_s,
                recharge_hint=self.config.recharge_hint,
                sample_retention_days=self.config.sample_retention_days,
                decision_retention_days=self.config.decision_retention_days,
                queue=self.config.queue,
            ),
            policy=self.config.policy,
            metrics=self.metrics,
            notifier=Notifier(
                currency=self.ledger_config.currency, smtp=self.config.smtp, webhook_url=self.config.webhook_url,
                admin_emails=self.config.admin_emails, user_email_template=self.config.user_email_template,
            ),
            name=self.name,
            anchors=AnchorLog(self.config.anchor_file, self.metrics.anchor_failures),
        )
        self.lease = Lease(self.lease_engine)
        self.connection_tests = ConnectionTests(self.engine, self.inventory, self.test_transport,
                                                self.config.command_timeout_s)
        self.web_login = WebLoginPoller(self.engine, self.inventory, self.login_transport,
                                        self.config.command_timeout_s, concurrency=self.config.concurrency)

    def _new_ssh(self) -> SshTransport:
        return SshTransport(SshSettings(client_key=self.config.ssh_key, known_hosts=self.config.known_hosts,
                                        connect_timeout_s=self.config.connect_timeout_s,
                                        login_timeout_s=self.config.connect_timeout_s))

    def loop(self, report: Callable[[TickSummary | None, str], None]) -> TickLoop:
        return TickLoop(self.controller, self.lease, self.inventory, self.config.tick_s, self.metrics, report,
                        self.connection_tests, self.config.connection_test_poll_s, self.web_login)

    async def aclose(self) -> None:
        for transports in (self.transport, self.test_transport, self.login_transport):
            await transports.aclose()
        self.controller.close()
        self.lease.release()
        self.engine.dispose()
        self.lease_engine.dispose()


def printer(currency: str, out: Callable[[str], None] = print) -> Callable[[TickSummary | None, str], None]:
    """The short live summary, one line per tick."""
    def report(summary: TickSummary | None, note: str) -> None:
        out(summary.line(currency) if summary is not None else note)
        sys.stdout.flush()
    return report


# Measured with bench/controller.py at 1,000 nodes: Python's default (700) ran the collector 1.1-2 s of a
# tick's 9 s of CPU; at 20,000 it takes about 0.3 s. A tick's objects are short-lived, so little is kept.
GC_FIRST_GENERATION = 20_000


def tune_gc() -> None:
    """Fewer, larger first-generation collections, and none of startup's objects scanned again: a tick
    allocates hundreds of thousands of short-lived objects (parsed samples, records, rows)."""
    gc.freeze()
    gc.set_threshold(GC_FIRST_GENERATION, 20, 20)


async def serve(runtime: Runtime, report: Callable[[TickSummary | None, str], None], *, ticks: int | None = None,
                stop: asyncio.Event | None = None) -> int:
    """Run the loop until SIGINT/SIGTERM (or ``stop``, or ``ticks`` ticks ran); returns the exit status."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    if runtime.config.metrics_port:
        start_http_server(runtime.config.metrics_port, addr=runtime.config.metrics_address,
                          registry=runtime.registry)
    def counted(summary: TickSummary | None, note: str) -> None:
        report(summary, note)
        if ticks is not None and tick_loop.ticks >= ticks:
            stop.set()

    tick_loop = runtime.loop(counted)
    try:
        await tick_loop.run(stop)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await runtime.aclose()
    return 0


def run_controller(
    database_url: str,
    inventory: Path | str,
    *,
    environ: dict[str, str] | None = None,
    tick_s: float | None = None,
    ticks: int | None = None,
    out: Callable[[str], None] = print,
) -> int:
    """Run the controller against ``database_url`` (the app role) and ``inventory`` until interrupted,
    printing one summary line per tick. Other settings come from ``environ`` (default ``os.environ``).

    This is what ``gpuledger run`` calls for its embedded default (a local node in the inventory).
    """
    env = dict(os.environ if environ is None else environ)
    env["GPULEDGER_DATABASE_URL"] = database_url
    env["GPULEDGER_INVENTORY"] = str(inventory)
    if tick_s is not None:
        env["GPULEDGER_TICK_SECONDS"] = str(tick_s)
        env.setdefault("GPULEDGER_TICK_BUDGET_SECONDS", str(tick_s * 0.75))
    config = ControllerConfig.from_env(env)
    ledger_config = LedgerConfig.from_env(env)
    if ledger_config.database_url.reveal() != database_url:
        ledger_config = replace(ledger_config, database_url=Secret(database_url))
    runtime = Runtime(config, ledger_config)
    anchor.log_to(sys.stderr)
    tune_gc()
    return asyncio.run(serve(runtime, printer(ledger_config.currency, out), ticks=ticks))
