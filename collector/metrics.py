"""Prometheus metrics of the controller, on a registry the caller injects (tests use a fresh one).

Per tick: duration, budget overruns, nodes by outcome, samples, ledger entries, money charged, actions,
unaccounted time; per node: up, clock skew; per GPU (with node, GPU and model labels): utilisation,
memory, temperature, power and how many users hold it; per (node, GPU, user): the memory a user holds.
Remote strings only ever appear as label values, which the exposition format escapes.
``WalletBalances`` adds, at scrape time, the balance and the usage money charged of each wallet an admin
allow-listed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy.engine import Engine

from collector.charging.samples import Sample
from collector.types import Node, Outcome, TickSummary
from ledger.db import reading
from ledger.errors import LedgerError
from ledger.reports import WalletFigures, wallet_figures

log = logging.getLogger("gpuledger.controller")

TICK_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 20, 30, 45, 60, 120)


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        r = registry
        self.tick_duration = Histogram("gpuledger_tick_duration_seconds", "Wall time of a tick", buckets=TICK_BUCKETS,
                                       registry=r)
        self.tick_budget = Gauge("gpuledger_tick_budget_seconds", "The tick budget", registry=r)
        self.ticks_over_budget = Counter("gpuledger_ticks_over_budget", "Ticks that ran over budget", registry=r)
        self.nodes = Gauge("gpuledger_nodes", "Nodes by outcome of the last tick", ["outcome"], registry=r)
        self.node_up = Gauge("gpuledger_node_up", "1 if the node's last sample succeeded", ["node"], registry=r)
        self.samples = Counter("gpuledger_samples", "Samples received", registry=r)
        self.entries = Counter("gpuledger_ledger_entries", "Usage entries posted to the ledger", registry=r)
        self.charged = Counter("gpuledger_charged_micro", "Money charged, in micro-units", registry=r)
        self.actions = Counter("gpuledger_actions", "Enforcement actions by kind and outcome", ["kind", "outcome"],
                               registry=r)
        self.unaccounted = Counter("gpuledger_unaccounted_seconds", "Usage time that could not be measured",
                                   ["reason"], registry=r)
        self.database_up = Gauge("gpuledger_database_up", "1 if the last tick reached the database", registry=r)
        self.anchor_failures = Counter("gpuledger_anchor_failures", "Chain heads that could not be read or appended"
                                       " to the anchor file", registry=r)
        self.lease_held = Gauge("gpuledger_lease_held", "1 if this controller is the active one", registry=r)
        self.skew = Gauge("gpuledger_node_clock_skew_seconds", "Node wall clock minus controller clock", ["node"],
                          registry=r)
        gpu = ["node", "gpu", "index", "model"]
        self.gpu_util = Gauge("gpuledger_gpu_utilization_percent", "GPU utilisation", gpu, registry=r)
        self.gpu_mem_used = Gauge("gpuledger_gpu_memory_used_bytes", "GPU memory used", gpu, registry=r)
        self.gpu_mem_total = Gauge("gpuledger_gpu_memory_total_bytes", "GPU memory total", gpu, registry=r)
        self.gpu_temp = Gauge("gpuledger_gpu_temperature_celsius", "GPU temperature", gpu, registry=r)
        self.gpu_power = Gauge("gpuledger_gpu_power_watts", "GPU power draw", gpu, registry=r)
        self.gpu_holders = Gauge("gpuledger_gpu_holders", "Users with processes on the GPU", gpu, registry=r)
        # One GPU's children of the six per-GPU gauges: looking them up by labels each tick cost about 0.3 s
        # of a 1,000-node tick's CPU (bench/controller.py).
        self._gpu_children: dict[tuple[str, str, str, str], tuple[Gauge, ...]] = {}
        self.gpu_user_mem = Gauge("gpuledger_gpu_user_memory_bytes", "GPU memory a user's processes hold",
                                  ["node", "gpu", "user"], registry=r)
        # Children kept from tick to tick for the same reason; a (node, GPU, user) not seen in a tick is removed.
        self._user_mem_children: dict[tuple[str, str, str], Gauge] = {}
        self._node_children: dict[str, tuple[Gauge, Gauge]] = {}

    def action(self, kind: str, outcome: str) -> None:
        self.actions.labels(kind, outcome).inc()

    def observe_tick(self, summary: TickSummary, nodes: Sequence[tuple[Node, Outcome, Sample | None]]) -> None:
        self.tick_duration.observe(summary.duration_s)
        if summary.over_budget:
            self.ticks_over_budget.inc()
        for outcome in Outcome:
            self.nodes.labels(outcome.value).set(summary.outcomes.get(outcome.value, 0))
        self.database_up.set(1 if summary.database_ok else 0)
        self.entries.inc(summary.entries)
        self.charged.inc(summary.charged)
        seen: set[tuple[str, str, str]] = set()
        for node, outcome, sample in nodes:
            self._node(node.name)[0].set(1 if outcome is Outcome.OK else 0)
            if sample is not None:
                self.samples.inc()
                self._gpus(node.name, sample, seen)
        for gone in self._user_mem_children.keys() - seen:
            del self._user_mem_children[gone]
            self.gpu_user_mem.remove(*gone)

    def observe_skew(self, node: str, skew_ms: int) -> None:
        self._node(node)[1].set(skew_ms / 1000)

    def _node(self, node: str) -> tuple[Gauge, Gauge]:
        """The node's up and clock-skew children."""
        children = self._node_children.get(node)
        if children is None:
            children = self._node_children[node] = (self.node_up.labels(node), self.skew.labels(node))
        return children

    def observe_gaps(self, gaps: Sequence[tuple[str, float]]) -> None:
        for reason, seconds in gaps:
            self.unaccounted.labels(reason).inc(seconds)

    def _gpus(self, node: str, sample: Sample, seen: set[tuple[str, str, str]]) -> None:
        owners = {p.pid: p.user or str(p.uid) for p in sample.processes}
        holders: dict[str, dict[str, int]] = {}
        for gp in sample.gpu_processes:
            user = gp.user or (str(gp.uid) if gp.uid is not None else owners.get(gp.pid, "unknown"))
            held = holders.setdefault(gp.gpu_uuid, {})
            held[user] = held.get(user, 0) + (gp.used_memory_bytes or 0)
        for gpu in sample.gpus:
            labels = (node, gpu.uuid, str(gpu.index), gpu.name or "unknown")
            children = self._gpu_children.get(labels)
            if children is None:
                children = self._gpu_children[labels] = tuple(gauge.labels(*labels) for gauge in (
                    self.gpu_util, self.gpu_mem_used, self.gpu_mem_total, self.gpu_temp, self.gpu_power,
                    self.gpu_holders))
            values = (gpu.utilization_percent, gpu.memory_used_bytes, gpu.memory_total_bytes, gpu.temperature_c,
                      None if gpu.power_mw is None else gpu.power_mw / 1000, len(holders.get(gpu.uuid, {})))
            for child, value in zip(children, values, strict=True):
                if value is not None:
                    child.set(value)
            for user, memory in holders.get(gpu.uuid, {}).items():
                key = (node, gpu.uuid, user)
                user_child = self._user_mem_children.get(key)
                if user_child is None:
                    user_child = self._user_mem_children[key] = self.gpu_user_mem.labels(*key)
                user_child.set(memory)
                seen.add(key)


def read_wallet_figures(engine: Engine, wallets: Sequence[str]) -> Mapping[str, WalletFigures]:
    """The figures of ``wallets`` in one read-only transaction and one query (``ledger.reports.wallet_figures``)."""
    with reading(engine) as conn:
        return wallet_figures(conn, wallets)


class WalletBalances:
    """For the wallets of ``GPULEDGER_METRICS_WALLETS``: ``gpuledger_wallet_balance_micro{wallet}`` (what the wallet
    holds) and ``gpuledger_wallet_charged_micro{wallet}`` (the usage money charged to it since it was opened, net
    of refunds and reversals of usage), read from the ledger when Prometheus scrapes, all wallets in one query,
    and how many of them could not be read.

    Both are in micro-units, like ``gpuledger_charged_micro``: the exposition format carries floats, which hold
    micro-units exactly up to 2**53 (9 billion in the major unit), so they are display figures and the ledger
    stays the exact record. The charged series is cumulative but typed a gauge, not a counter: a refund lowers
    it, and ``rate()``/``increase()`` would read any decrease as a counter reset and add the whole total back;
    ``delta()`` over a window is the money charged in it, refunds counted.

    An allow-list, not the top N: its series are exactly the wallets an admin chose (the shared project wallets
    worth a graph or an alert), stable from scrape to scrape, while a top N changes members as balances move
    (series that start and stop, alerts that flap) and needs a sort of every wallet at each scrape."""

    def __init__(self, figures: Callable[[Sequence[str]], Mapping[str, WalletFigures]], wallets: Sequence[str]) -> None:
        self._figures = figures
        self._wallets = tuple(wallets)

    def describe(self) -> Iterator[Metric]:
        # Names only: the registry must not read the ledger when the collector is registered.
        yield GaugeMetricFamily("gpuledger_wallet_balance_micro", "", labels=["wallet"])
        yield GaugeMetricFamily("gpuledger_wallet_charged_micro", "", labels=["wallet"])
        yield GaugeMetricFamily("gpuledger_wallet_balance_errors", "")

    def collect(self) -> Iterator[Metric]:
        balances = GaugeMetricFamily("gpuledger_wallet_balance_micro", "Available balance of an allow-listed wallet,"
                                     " in micro-units", labels=["wallet"])
        charged = GaugeMetricFamily("gpuledger_wallet_charged_micro", "Usage money charged to an allow-listed wallet"
                                    " since it was opened, net of refunds and reversals, in micro-units",
                                    labels=["wallet"])
        figures: Mapping[str, WalletFigures] | None = None
        try:
            figures = self._figures(self._wallets)
        except LedgerError as exc:  # database away: no series this scrape, every wallet counted below
            log.warning("wallet figures not read for the metrics: %s", exc)
        missing = []
        for wallet in self._wallets:
            found = None if figures is None else figures.get(wallet)
            if found is None:
                missing.append(wallet)
                continue
            balances.add_metric([wallet], found.available)
            charged.add_metric([wallet], found.charged)
        if figures is not None and missing:
            log.warning("wallets %s: not in the ledger, no series for them", ", ".join(missing))
        yield balances
        yield charged
        yield GaugeMetricFamily("gpuledger_wallet_balance_errors", "Allow-listed wallets whose figures the last"
                                " scrape could not read", value=len(missing))
