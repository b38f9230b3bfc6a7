"""One tick: sample every node, charge each sample, then converge every node to its users' standing.

This module keeps the order of the phases, the tick budget and what a database outage means; the work of
each phase lives in its room: the tick's record (``collector.ticklog``), charging
(``collector.charging.batcher``), deciding (``collector.enforcing.decide``), converging
(``collector.enforcing.converge``) and telling people (``collector.enforcing.notices``).

Phase 1 (collect and charge) runs per node under a semaphore, each node bounded by the command timeout
and the whole phase by the tick budget, so a dead or slow node costs only its own slot. Each sample is
charged in its own database transaction on a small thread pool. Phase 2 (decide and enforce) runs only
when every database step of the tick succeeded: while the database is unreachable nothing is enforced,
and the next good tick catches up from the cumulative counters. Enforcement reuses each node's session,
so a node's sample and its verbs share one SSH connection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from collector.anchor import AnchorLog
from collector.charging.batcher import ChargeBatcher
from collector.charging.posting import Charged, Charger, Fetched
from collector.charging.samples import BadSample, Sample, parse_sample
from collector.config import TierPolicy
from collector.enforcing import standing
from collector.enforcing.admin import AdminState
from collector.enforcing.converge import Converger
from collector.enforcing.decide import decide
from collector.enforcing.decisionlog import DecisionLog
from collector.enforcing.notices import Notice, Notifier, QueueNotice, tier_notices
from collector.enforcing.rules import Rules
from collector.errors import NodeUnavailable
from collector.logs import node_logger
from collector.metrics import Metrics
from collector.nodes.registry import NodeReport
from collector.nodes.transport.abc import NodeSession, Transport
from collector.queueing.driver import QueueDriver
from collector.ticklog import TickLog
from collector.types import Node, Outcome, TickSettings, TickSummary
from control.overrides import Override
from ledger.config import LedgerConfig
from ledger.errors import LedgerError, LedgerUnavailable
from ledger.service import Ledger

T = TypeVar("T")
log = logging.getLogger("gpuledger.controller")


@dataclass
class _NodeState:
    node: Node
    outcome: Outcome = Outcome.UNREACHABLE
    error: str | None = None
    session: NodeSession | None = None
    sample: Sample | None = None
    charged: Charged | None = None
    database_failed: bool = False


@dataclass(frozen=True)
class _Enforcement:
    actions: int = 0
    notices: Sequence[Notice | QueueNotice] = ()


class Controller:
    """Runs ticks; owns nothing it was given (transports, engine, ledger), only its caches."""

    def __init__(
        self,
        *,
        engine: Engine,
        ledger: Ledger,
        ledger_config: LedgerConfig,
        transports: Callable[[Node], Transport],
        charger: Charger,
        settings: TickSettings,
        policy: TierPolicy,
        metrics: Metrics,
        notifier: Notifier | None = None,
        name: str = "controller",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        anchors: AnchorLog | None = None,
    ) -> None:
        self.engine = engine
        self.ledger = ledger
        self.ledger_config = ledger_config
        self.transports = transports
        self.charger = charger
        self.settings = settings
        # The environment's rules; each tick runs on them with the newest admin settings laid over them.
        self.defaults = Rules(ledger_config.thresholds, policy, settings.dry_run)
        self.rules = self.defaults
        self.overrides: Mapping[str, Override] = {}
        self.metrics = metrics
        self.notifier = notifier
        self.name = name
        self.clock = clock
        self.anchors = anchors
        self.ticklog = TickLog(engine, name)
        self.converger = Converger(db=self._db, decisions=DecisionLog(engine), metrics=metrics, settings=settings,
                                   currency=ledger_config.currency)
        self.queue = (QueueDriver(engine=engine, db=self._db, settings=settings, queue=settings.queue)
                      if settings.queue is not None else None)
        self._burn = standing.BurnRates()
        self._pool = ThreadPoolExecutor(max_workers=settings.db_workers, thread_name_prefix="gpuledger-db")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    async def _db(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, partial(fn, *args))

    # -- the tick ------------------------------------------------------------------------------------------------

    async def tick(self, nodes: Sequence[Node]) -> TickSummary:
        started = time.monotonic()
        started_at = self.clock()
        database_ok = True
        tick_id: int | None = None
        admin = AdminState(self.defaults)
        # The registry decides (an admin may have unlisted a node); the inventory only while it is unreachable.
        names = frozenset(n.name for n in nodes if n.listed)
        try:
            tick_id, admin, names = await self._db(self.ticklog.open, nodes, started_at, self.defaults)
        except (DBAPIError, LedgerError) as exc:
            database_ok = False
            log.warning("database unreachable at tick start: %s", exc)
        listed = [n for n in nodes if n.name in names]
        self.rules, self.overrides = admin.rules, admin.overrides
        states = {n.name: _NodeState(n) for n in listed}
        semaphore = asyncio.Semaphore(self.settings.concurrency)
        deadline = started + self.settings.budget_s
        batcher = ChargeBatcher(partial(self._db, self.charger.charge_many))
        tasks = [
            asyncio.create_task(self._collect(states[n.name], semaphore, deadline, batcher if database_ok else None))
            for n in listed
        ]
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.monotonic()))
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for task in done:
                if task.exception() is not None:  # a bug, not a node's fault: say so, and keep ticking
                    log.error("collecting a node failed unexpectedly", exc_info=task.exception())
        await batcher.aclose()
        for state in states.values():
            if state.outcome is Outcome.OK and state.charged is None and not state.database_failed and database_ok:
                state.outcome, state.error = Outcome.TIMEOUT, "tick budget exhausted"
        database_ok = database_ok and not any(s.database_failed for s in states.values())
        enforcement = _Enforcement()
        if database_ok:
            try:
                enforcement = await self._enforce(tick_id, states, deadline)
            except (DBAPIError, LedgerError) as exc:
                database_ok = False
                log.warning("database unreachable during enforcement; nothing more is enforced: %s", exc)
            except TimeoutError:
                log.warning("enforcement ran past the tick budget; the next tick converges the rest")
        if self.notifier is not None and enforcement.notices:
            await self.notifier.send_all(enforcement.notices)
        summary = self._summary(tick_id, started_at, started, states, enforcement, database_ok)
        reports = [NodeReport(s.node.name, s.outcome, started_at, s.error, s.sample) for s in states.values()]
        try:
            await self._db(self.ticklog.close, tick_id, reports, summary)
            await self._db(self.ticklog.prune_if_due, self.settings.sample_retention_days,
                           self.settings.decision_retention_days)
        except (DBAPIError, LedgerError) as exc:
            log.warning("could not record the tick: %s", exc)
        if self.anchors is not None and database_ok:  # the head after this tick's charges (collector/anchor.py)
            await self._db(self.anchors.publish, self.ledger, self.clock())
        self.metrics.observe_tick(summary, [(s.node, s.outcome, s.sample) for s in states.values()])
        return summary

    def _summary(
        self, tick_id: int | None, started_at: datetime, started: float, states: dict[str, _NodeState],
        enforcement: _Enforcement, database_ok: bool,
    ) -> TickSummary:
        charged = [s.charged for s in states.values() if s.charged is not None]
        duration = time.monotonic() - started
        return TickSummary(
            tick_id=tick_id,
            started_at=started_at,
            duration_s=duration,
            outcomes=dict(Counter(s.outcome.value for s in states.values())),
            users=len({u for c in charged for u in c.users}),
            charged=sum(c.amount for c in charged),
            entries=sum(c.entries for c in charged),
            actions=enforcement.actions,
            dry_run=self.rules.dry_run,
            database_ok=database_ok,
            enforced=database_ok,
            over_budget=duration > self.settings.budget_s,
        )

    # -- phase 1: collect and charge -----------------------------------------------------------------------------

    async def _collect(
        self, state: _NodeState, semaphore: asyncio.Semaphore, deadline: float, charge: ChargeBatcher | None
    ) -> None:
        node = state.node
        nlog = node_logger(node.name)
        async with semaphore:
            transport = self.transports(node)
            try:
                state.session = await transport.session(node)
                timeout = min(self.settings.command_timeout_s, max(0.1, deadline - time.monotonic()))
                sent = time.time_ns()
                result = await state.session.run(["sample"], timeout_s=timeout)
                received_ns = time.time_ns()
            except NodeUnavailable as exc:
                state.outcome, state.error, state.session = Outcome(exc.outcome), exc.detail, None
                nlog.warning("node %s: %s", exc.outcome, exc.detail)
                return
            if not result.ok:
                state.outcome, state.error = Outcome.NONZERO_EXIT, f"exit {result.exit_status}: {result.stderr[:300]}"
                nlog.warning("sample failed with exit status %d", result.exit_status)
                return
            try:
                sample = parse_sample(result.stdout)
            except BadSample as exc:
                state.outcome, state.error = Outcome.BAD_OUTPUT, str(exc)
                nlog.warning("bad sample: %s", exc)
                return
            state.outcome, state.sample = Outcome.OK, sample
            skew_ms = (sample.wall_time_ns - (sent + received_ns) // 2) // 1_000_000
            self.metrics.observe_skew(node.name, skew_ms)
            flags = ("clock_skew",) if abs(skew_ms) > self.settings.skew_threshold_s * 1000 else ()
            if flags:
                nlog.warning("clock skew %d ms (threshold %d s)", skew_ms, self.settings.skew_threshold_s)
            if charge is None:
                return
            fetched = Fetched(node.name, result.stdout, sample, datetime.fromtimestamp(received_ns / 1e9, UTC),
                              skew_ms, flags)
            try:
                state.charged = await charge.charge(fetched)
                self.metrics.observe_gaps([(g.reason, float(g.seconds)) for g in state.charged.gaps])
            except LedgerUnavailable as exc:
                state.database_failed, state.error = True, str(exc)
                nlog.warning("database unreachable; the sample will be charged from the counters later")
            except DBAPIError as exc:
                state.database_failed, state.error = True, str(exc.orig)
                nlog.warning("database error while charging: %s", exc.orig)

    # -- phase 2: decide and enforce -----------------------------------------------------------------------------

    async def _enforce(self, tick_id: int | None, states: dict[str, _NodeState], deadline: float) -> _Enforcement:
        now = self.clock()
        await self.converger.load()
        sampled = [(s.node.name, s.sample, s.session) for s in states.values() if s.sample is not None]
        pairs = {(node, user) for node, sample, _ in sampled
                 for user in self.converger.candidates(node, sample).values()}
        decision = await self._db(decide, self.engine, self._burn, pairs, self.rules.thresholds,
                                  self.overrides, now)
        notices = tier_notices(decision.transitions, decision.standings)
        turn = None
        if self.queue is not None:  # before converging: what the queue grants is what the nodes enforce
            exempt = {user for user, s in decision.standings.items() if s.exempt}
            turn = await self.queue.tick(sampled, decision.billing, exempt, now, self.rules.queue)
        work = [
            self.converger.enforce_node(tick_id, node, sample, session, decision, self.rules, self.overrides, now,
                                        turn.held.get(node) if turn else None, turn.kills.get(node) if turn else None)
            for node, sample, session in sampled if session is not None
        ]
        actions = 0
        if work:
            ran = await asyncio.wait_for(asyncio.gather(*work), timeout=max(1.0, deadline - time.monotonic() + 15))
            actions = sum(ran)
        return _Enforcement(actions, (*notices, *(turn.notices if turn else ())))
