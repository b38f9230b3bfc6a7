"""One tick: sample every node, charge each sample, then converge every node to its users' standing.

Phase 1 (collect and charge) runs per node under a semaphore, each node bounded by the command timeout
and the whole phase by the tick budget, so a dead or slow node costs only its own slot. Each sample is
charged in its own database transaction on a small thread pool. Phase 2 (decide and enforce) runs only
when every database step of the tick succeeded: while the database is unreachable nothing is enforced,
and the next good tick catches up from the cumulative counters. Enforcement reuses each node's session,
so a node's sample and its verbs share one SSH connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from collector.anchor import AnchorLog
from collector.charging import retention
from collector.charging.posting import Charged, Charger, Fetched
from collector.charging.samples import BadSample, Sample, parse_sample
from collector.config import TierPolicy
from collector.enforcing import standing
from collector.enforcing.admin import AdminReader, AdminState
from collector.enforcing.decisionlog import DecisionLog, outcome_of, restricts
from collector.enforcing.decisions import (
    Desired,
    ProcessRef,
    Standing,
    Transition,
    advance,
    desired_state,
    status_document,
    terminal_message,
)
from collector.enforcing.notices import Notice, Notifier
from collector.enforcing.planner import Action, Actual, FactError, parse_gpu_state, parse_outside, parse_quota, plan
from collector.enforcing.rules import Rules
from collector.errors import NodeUnavailable
from collector.logs import node_logger
from collector.metrics import Metrics
from collector.nodes import registry
from collector.nodes.transport.abc import NodeSession, Transport
from collector.types import Node, Outcome
from control.overrides import Override, override_tier
from ledger.config import LedgerConfig
from ledger.errors import LedgerError, LedgerUnavailable
from ledger.service import Ledger

T = TypeVar("T")
log = logging.getLogger("gpuledger.controller")
# Status files are rewritten at once when what they enforce changes (tier, GPU block, quota, kill time, the
# user), and otherwise at least this often, which refreshes the balance, burn rate and notice they show and
# keeps them fresh for the hook (it calls them stale at 300 s). Rewriting every user's file on every node
# every tick would cost each node one command per user per minute for a balance that moved by cents.
STATUS_REFRESH_S = 120
CHARGE_BATCH = 64
PRUNE_EVERY_S = 3600

def _status_fingerprint(desired: Desired) -> tuple[object, ...]:
    """What, when it changes, makes a status file due at once (the balance alone waits for the refresh)."""
    return (desired.tier, desired.gpu_blocked, desired.cpu_quota_ppm, desired.kill_at, desired.linux_user,
            desired.billing_user)


@dataclass(frozen=True)
class TickSettings:
    budget_s: float = 45.0
    command_timeout_s: float = 15.0
    kill_timeout_s: float = 60.0
    concurrency: int = 64
    dry_run: bool = False
    skew_threshold_s: int = 30
    recharge_hint: str = ""
    db_workers: int = 4
    sample_retention_days: int = 30
    decision_retention_days: int = 90


@dataclass(frozen=True)
class TickSummary:
    tick_id: int | None
    started_at: datetime
    duration_s: float
    outcomes: dict[str, int]
    users: int
    charged: int
    entries: int
    actions: int
    dry_run: bool
    database_ok: bool
    enforced: bool
    over_budget: bool

    def line(self, currency: str) -> str:
        from ledger.money import format_amount

        nodes = " ".join(f"{k}={v}" for k, v in sorted(self.outcomes.items()))
        mode = " dry-run" if self.dry_run else ""
        db = "" if self.database_ok else " DATABASE UNREACHABLE (nothing enforced)"
        return (
            f"tick {self.tick_id or '-'}{mode}: {self.duration_s:.2f}s nodes[{nodes}] users={self.users}"
            f" charged={format_amount(self.charged)} {currency} entries={self.entries} actions={self.actions}{db}"
        )


@dataclass
class _NodeState:
    node: Node
    outcome: Outcome = Outcome.UNREACHABLE
    error: str | None = None
    session: NodeSession | None = None
    sample: Sample | None = None
    charged: Charged | None = None
    database_failed: bool = False


@dataclass
class _Enforcement:
    actions: int = 0
    notices: list[Notice] = field(default_factory=list)


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
        self.admin = AdminReader()
        self.metrics = metrics
        self.notifier = notifier
        self.name = name
        self.clock = clock
        self.anchors = anchors
        self.decisions = DecisionLog(engine)
        self._burn = standing.BurnRates()
        self._restricted: dict[tuple[str, int], str] | None = None
        self._status_written: dict[tuple[str, int], tuple[tuple[object, ...], float]] = {}
        self._pool = ThreadPoolExecutor(max_workers=settings.db_workers, thread_name_prefix="gpuledger-db")
        self._pruned_at: float | None = None
        # (node, uid, kill time) whose pending kill the user has been told of.
        self._kill_warned: set[tuple[str, int, datetime]] = set()

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
            tick_id, admin, names = await self._db(self._open_tick, nodes, started_at)
        except (DBAPIError, LedgerError) as exc:
            database_ok = False
            log.warning("database unreachable at tick start: %s", exc)
        listed = [n for n in nodes if n.name in names]
        self.rules, self.overrides = admin.rules, admin.overrides
        states = {n.name: _NodeState(n) for n in listed}
        semaphore = asyncio.Semaphore(self.settings.concurrency)
        deadline = started + self.settings.budget_s
        batcher = _ChargeBatcher(partial(self._db, self.charger.charge_many), CHARGE_BATCH)
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
        try:
            await self._db(self._close_tick, tick_id, states, summary)
            if self._pruned_at is None or time.monotonic() - self._pruned_at > PRUNE_EVERY_S:
                pruned = await self._db(self._prune)
                self._pruned_at = time.monotonic()
                log.info("retention: removed %d samples older than %d days; %d decisions, %d ticks and %d"
                         " unaccounted gaps older than %d days", pruned.samples, self.settings.sample_retention_days,
                         pruned.decisions, pruned.ticks, pruned.unaccounted, self.settings.decision_retention_days)
        except (DBAPIError, LedgerError) as exc:
            log.warning("could not record the tick: %s", exc)
        if self.anchors is not None and database_ok:  # the head after this tick's charges (collector/anchor.py)
            await self._db(self.anchors.publish, self.ledger, self.clock())
        self.metrics.observe_tick(summary, [(s.node, s.outcome, s.sample) for s in states.values()])
        return summary

    def _open_tick(self, nodes: Sequence[Node], at: datetime) -> tuple[int, AdminState, frozenset[str]]:
        with self.engine.begin() as conn:
            listed = registry.sync_inventory(conn, nodes)
            admin = self.admin.read(conn, self.defaults)
            tick_id = int(
                conn.execute(
                    text("INSERT INTO collector.tick (controller, dry_run, started_at)"
                         " VALUES (:c, :d, :at) RETURNING id"),
                    {"c": self.name, "d": admin.rules.dry_run, "at": at},
                ).scalar_one()
            )
            return tick_id, admin, listed

    def _prune(self) -> retention.Pruned:
        with self.engine.begin() as conn:
            return retention.prune(conn, self.settings.sample_retention_days, self.settings.decision_retention_days)

    def _close_tick(self, tick_id: int | None, states: dict[str, _NodeState], summary: TickSummary) -> None:
        reports = [registry.NodeReport(s.node.name, s.outcome, summary.started_at, s.error, s.sample)
                   for s in states.values()]
        with self.engine.begin() as conn:
            registry.record_tick(conn, reports)
            if tick_id is not None:
                conn.execute(
                    text("UPDATE collector.tick SET finished_at = now(), summary = CAST(:s AS jsonb) WHERE id = :id"),
                    {"id": tick_id, "s": json.dumps({
                        "outcomes": summary.outcomes, "users": summary.users, "charged": summary.charged,
                        "entries": summary.entries, "actions": summary.actions, "database_ok": summary.database_ok,
                        "enforced": summary.enforced, "over_budget": summary.over_budget,
                        "duration_s": round(summary.duration_s, 3),
                    })},
                )

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
        self, state: _NodeState, semaphore: asyncio.Semaphore, deadline: float, charge: _ChargeBatcher | None
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

    def _candidates(self, state: _NodeState) -> dict[int, str]:
        """uid -> Linux user to converge on a node: everyone on it now, and everyone we restricted there."""
        assert state.sample is not None and self._restricted is not None
        users = _users(state.sample)
        for (node, uid), linux_user in self._restricted.items():
            if node == state.node.name:
                users.setdefault(uid, linux_user)
        return users

    def _decide(self, states: dict[str, _NodeState], now: datetime) -> tuple[
        dict[tuple[str, str], str], dict[str, Standing], dict[str, Transition], dict[str, int]
    ]:
        pairs = {
            (s.node.name, user)
            for s in states.values() if s.sample is not None
            for user in self._candidates(s).values()
        }
        with self.engine.connect() as conn:
            billing = standing.resolve(conn, pairs)
        users = sorted(set(billing.values()))
        standings = standing.standings(self.ledger, users, self.rules.thresholds)
        with self.engine.begin() as conn:
            burn = self._burn.get(conn, users, now)
            previous = standing.load_tier_states(conn, users)
            transitions = {
                u: advance(previous.get(u), u, override_tier(standings[u].tier_name, standings[u].tier.value,
                                                             self.overrides.get(u), now), now)
                for u in users if u in standings
            }
            standing.save_transitions(conn, list(transitions.values()))
        return billing, standings, transitions, burn

    async def _enforce(self, tick_id: int | None, states: dict[str, _NodeState], deadline: float) -> _Enforcement:
        now = self.clock()
        if self._restricted is None:
            self._restricted = await self._db(self.decisions.restricted)
        billing, standings, transitions, burn = await self._db(self._decide, states, now)
        result = _Enforcement()
        for user, transition in transitions.items():
            if transition.changed:
                result.notices.append(Notice(user, transition.previous.tier if transition.previous else "",
                                             transition.current.tier, standings[user].available))
        work = [
            self._enforce_node(tick_id, s, billing, standings, transitions, burn, now, result)
            for s in states.values() if s.sample is not None and s.session is not None
        ]
        if work:
            await asyncio.wait_for(asyncio.gather(*work), timeout=max(1.0, deadline - time.monotonic() + 15))
        return result

    async def _enforce_node(
        self, tick_id: int | None, state: _NodeState, billing: dict[tuple[str, str], str],
        standings: dict[str, Standing], transitions: dict[str, Transition], burn: dict[str, int], now: datetime,
        result: _Enforcement,
    ) -> None:
        assert state.sample is not None and state.session is not None and self._restricted is not None
        node, sample, session = state.node.name, state.sample, state.session
        nlog = node_logger(node)
        gpu_holders = _gpu_processes(sample)
        for uid, linux_user in sorted(self._candidates(state).items()):
            user = billing.get((node, linux_user))
            if user is None or user not in transitions:
                continue
            desired = desired_state(uid, linux_user, transitions[user].current, standings[user], self.rules.policy,
                                    gpu_holders.get(uid, ()), now, self.overrides.get(user))
            try:
                killed = await self._converge(tick_id, session, node, desired, sample.logical_cpus, result)
                await self._write_status(session, node, desired, burn.get(user, 0), now)
                if await self._notify(tick_id, session, node, desired, now, transitions[user].changed, killed):
                    result.actions += 1
            except NodeUnavailable as exc:
                nlog.warning("enforcement stopped: %s: %s", exc.outcome, exc.detail)
                return

    async def _converge(
        self, tick_id: int | None, session: NodeSession, node: str, desired: Desired, cpus: int, result: _Enforcement
    ) -> list[int]:
        """Apply the differences; returns the PIDs of the GPU processes it killed."""
        assert self._restricted is not None
        key = (node, desired.uid)
        wants_restriction = desired.cpu_quota_ppm is not None or desired.gpu_blocked or bool(desired.kill)
        if not wants_restriction and key not in self._restricted:
            return []
        actual = await self._read_actual(session, desired.uid)
        if actual is None:
            return []
        killed = []
        for action in plan(node, desired, actual, cpus):
            status, detail = await self._execute(tick_id, session, action, desired)
            result.actions += 1
            if action.kind == "kill" and status == "applied" and detail.get("outcome") == "killed":
                killed.append(int(action.verb[2]))
        if wants_restriction:
            self._restricted[key] = desired.linux_user
        else:
            self._restricted.pop(key, None)
        return killed

    async def _read_actual(self, session: NodeSession, uid: int) -> Actual | None:
        timeout = self.settings.command_timeout_s
        quota = await session.run(["quota-get", str(uid)], timeout_s=timeout)
        gpu = await session.run(["gpu-state", str(uid)], timeout_s=timeout)
        try:
            return Actual(uid, parse_quota(quota.stdout), parse_gpu_state(gpu.stdout),
                          parse_outside("quota-get", quota.stdout), parse_outside("gpu-state", gpu.stdout))
        except FactError as exc:
            node_logger(session.node.name).warning("cannot read the state of uid %d: %s", uid, exc)
            return None

    async def _execute(
        self, tick_id: int | None, session: NodeSession, action: Action, desired: Desired
    ) -> tuple[str, dict[str, Any]]:
        """Record, run and complete one verb; returns its outcome and the node's result document."""
        dry_run = self.rules.dry_run
        decision = await self._db(self.decisions.open, tick_id, action, desired, dry_run)
        self.metrics.action(action.kind, "dry_run" if dry_run else "planned")
        if dry_run:
            return "dry_run", {}
        timeout = self.settings.kill_timeout_s if action.kind == "kill" else self.settings.command_timeout_s
        try:
            outcome = await session.run(action.verb, stdin=action.stdin, timeout_s=timeout)
        except NodeUnavailable as exc:
            await self._db(self.decisions.close, decision, "unreachable", None, {"error": exc.detail})
            self.metrics.action(action.kind, "unreachable")
            raise
        status, detail = outcome_of(outcome)
        await self._db(self.decisions.close, decision, status, outcome.exit_status, detail)
        self.metrics.action(action.kind, status)
        node_logger(session.node.name).info("%s uid=%d: %s (%s)", action.kind, action.uid, status, action.reason)
        if restricts(action) and status in ("applied", "unchanged"):
            assert self._restricted is not None
            self._restricted[(session.node.name, action.uid)] = desired.linux_user
        return status, detail

    async def _write_status(self, session: NodeSession, node: str, desired: Desired, burn: int, now: datetime) -> None:
        fingerprint = _status_fingerprint(desired)
        last = self._status_written.get((node, desired.uid))
        # A per-file offset spreads the refreshes over a minute instead of rewriting every file in one tick.
        refresh = STATUS_REFRESH_S + zlib.crc32(f"{node}/{desired.uid}".encode()) % 60
        if last is not None and last[0] == fingerprint and time.monotonic() - last[1] < refresh:
            return
        if self.rules.dry_run:
            return
        document = status_document(
            desired, currency=self.ledger_config.currency, burn_per_hour=burn,
            blocked_threshold=self.rules.thresholds.blocked, now=now,
            recharge_hint=self.settings.recharge_hint,
        )
        result = await session.run(["status-write", str(desired.uid)], stdin=json.dumps(document).encode(),
                                   timeout_s=self.settings.command_timeout_s)
        if result.ok:
            self._status_written[(node, desired.uid)] = (fingerprint, time.monotonic())
        else:
            node_logger(node).warning("status-write uid=%d failed: %s", desired.uid, result.stdout[:300])

    async def _notify(
        self, tick_id: int | None, session: NodeSession, node: str, desired: Desired, now: datetime,
        tier_changed: bool, killed: Sequence[int],
    ) -> bool:
        """One line to the user's terminals on this node when there is news: a new tier, a pending kill
        (once per kill time, even if the node missed the tick the user entered ``blocked``), a kill done.
        Returns whether a notice was sent; the decision log keeps its text as the reason."""
        warned = (node, desired.uid, desired.kill_at) if desired.kill_at is not None else None
        warn_kill = desired.kill_pending(now) and warned not in self._kill_warned
        if warn_kill and not tier_changed and desired.kill_at is not None:
            since = desired.kill_at - timedelta(seconds=self.rules.policy.kill_grace_s)
            warn_kill = not await self._db(self.decisions.notified_since, node, desired.uid, since)
        message = terminal_message(desired, self.ledger_config.currency, now, tier_changed=tier_changed,
                                   warn_kill=warn_kill, killed=killed)
        if warned is not None and desired.kill_pending(now):
            self._kill_warned.add(warned)
        if message is None:
            return False
        action = Action(node, desired.uid, ("notify", str(desired.uid)), f"notice: {message}", stdin=message.encode())
        await self._execute(tick_id, session, action, desired)
        return True


class _ChargeBatcher:
    """Samples are charged as they arrive, in batches: whatever queued while the last transaction ran goes
    into the next one, so a thousand nodes cost tens of transactions instead of a thousand (the ledger's
    single writer lock serialises them anyway). Each sample still commits with its records and entries."""

    def __init__(self, run: Callable[[list[Fetched]], Awaitable[list[Charged]]], size: int) -> None:
        self._run = run
        self._size = size
        self._queue: asyncio.Queue[tuple[Fetched, asyncio.Future[Charged]]] = asyncio.Queue()
        self._worker = asyncio.create_task(self._work())

    async def charge(self, fetched: Fetched) -> Charged:
        future: asyncio.Future[Charged] = asyncio.get_running_loop().create_future()
        await self._queue.put((fetched, future))
        return await future

    async def _work(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                results = await self._run([fetched for fetched, _ in batch])
            except LedgerUnavailable as exc:  # every waiting node learns why; the next tick catches up
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            except Exception as exc:
                if len(batch) == 1:
                    if not batch[0][1].done():
                        batch[0][1].set_exception(exc)
                    continue
                # One sample the database refuses must not hold the others back: charge them one by one.
                for item in batch:
                    await self._queue.put(item)
                self._size = 1
                continue
            for (_, future), charged in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(charged)

    async def aclose(self) -> None:
        self._worker.cancel()
        await asyncio.gather(self._worker, return_exceptions=True)


def _users(sample: Sample) -> dict[int, str]:
    """uid -> Linux user name of every user with processes or a CPU counter on the node (named ones only)."""
    users: dict[int, str] = {}
    for process in sample.processes:
        if process.user:
            users[process.uid] = process.user
    for row in sample.user_cpu or ():
        if row.user:
            users.setdefault(row.uid, row.user)
    for gp in sample.gpu_processes:
        if gp.uid is not None and gp.user:
            users.setdefault(gp.uid, gp.user)
    return users


def _gpu_processes(sample: Sample) -> dict[int, tuple[ProcessRef, ...]]:
    """uid -> the GPU processes it holds now, each identified for a safe kill."""
    by_pid = {p.pid: p for p in sample.processes}
    held: dict[int, set[ProcessRef]] = defaultdict(set)
    for gp in sample.gpu_processes:
        process = by_pid.get(gp.pid)
        uid = gp.uid if gp.uid is not None else (process.uid if process else None)
        start = gp.start_ticks if gp.start_ticks is not None else (process.start_ticks if process else None)
        if uid is not None and start is not None:
            held[uid].add(ProcessRef(sample.boot_id, gp.pid, start))
    return {uid: tuple(sorted(refs, key=lambda r: r.pid)) for uid, refs in held.items()}
