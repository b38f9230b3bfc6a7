"""Converging one node to its users' desired state: read what holds, run the planned verbs, refresh the
status files, tell the users.

Only users who should be restricted now, or whom the controller restricted and has not yet lifted, have
their actual state read (two read verbs each); everyone else costs nothing. Every verb is recorded in the
decision log before it runs and completed after (``collector.enforcing.decisionlog``); in dry-run the
record is all that happens. A node that stops answering ends its own convergence for this tick only.
"""

from __future__ import annotations

import json
import time
import zlib
from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from collector.charging.samples import Sample
from collector.enforcing.decide import Decision
from collector.enforcing.decisionlog import DecisionLog, outcome_of, restricts
from collector.enforcing.decisions import Desired, ProcessRef, desired_state, status_document
from collector.enforcing.notices import TerminalNotices
from collector.enforcing.planner import (
    Action,
    Actual,
    FactError,
    parse_denied_minors,
    parse_gpu_state,
    parse_outside,
    parse_quota,
    plan,
)
from collector.enforcing.rules import Rules
from collector.errors import NodeUnavailable
from collector.logs import node_logger
from collector.metrics import Metrics
from collector.nodes.transport.abc import NodeSession
from collector.types import Db, TickSettings
from control.overrides import Override

# Status files are rewritten at once when what they enforce changes (tier, GPU block, quota, kill time, the
# user), and otherwise at least this often, which refreshes the balance, burn rate and notice they show and
# keeps them fresh for the hook (it calls them stale at 300 s). Rewriting every user's file on every node
# every tick would cost each node one command per user per minute for a balance that moved by cents.
STATUS_REFRESH_S = 120


def _status_fingerprint(desired: Desired) -> tuple[object, ...]:
    """What, when it changes, makes a status file due at once (the balance alone waits for the refresh)."""
    return (desired.tier, desired.gpu_blocked, desired.cpu_quota_ppm, desired.kill_at, desired.linux_user,
            desired.billing_user)


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


class Converger:
    """Converges nodes tick after tick; keeps what spans ticks: the (node, uid) pairs it has restricted, when
    each status file was last written, and (in its ``TerminalNotices``) which pending kills were announced."""

    def __init__(
        self, *, db: Db, decisions: DecisionLog, metrics: Metrics, settings: TickSettings, currency: str
    ) -> None:
        self._db = db
        self._decisions = decisions
        self._metrics = metrics
        self._settings = settings
        self._currency = currency
        self._notices = TerminalNotices(db, decisions, currency)
        self._restricted: dict[tuple[str, int], str] | None = None
        self._status_written: dict[tuple[str, int], tuple[tuple[object, ...], float]] = {}
        # (node, uid) -> the queue's mask last confirmed there and when: every user on a node with a grant is
        # masked, so reading each one's facts every tick would cost two verbs per user per tick. A confirmed mask
        # is read again after STATUS_REFRESH_S (which also re-sends it to processes outside it) or when it changes.
        self._masks: dict[tuple[str, int], tuple[tuple[int, ...], float]] = {}

    async def load(self) -> None:
        """Read which pairs are restricted from the decision log, once: afterwards this process keeps it."""
        if self._restricted is None:
            self._restricted = await self._db(self._decisions.restricted)

    def candidates(self, node: str, sample: Sample) -> dict[int, str]:
        """uid -> Linux user to converge on a node: everyone on it now, and everyone we restricted there."""
        assert self._restricted is not None
        users = _users(sample)
        for (restricted_node, uid), linux_user in self._restricted.items():
            if restricted_node == node:
                users.setdefault(uid, linux_user)
        return users

    async def enforce_node(
        self, tick_id: int | None, node: str, sample: Sample, session: NodeSession, decision: Decision,
        rules: Rules, overrides: Mapping[str, Override], now: datetime, held: Mapping[int, str] | None = None,
        ungranted: Mapping[int, tuple[ProcessRef, ...]] | None = None,
    ) -> int:
        """Converge every candidate user on ``node``; returns how many verbs ran (or were recorded, dry),
        counting those before a node that stopped answering. ``held``: GPU minor -> the billing user the queue
        granted or offered it to (docs/queue.md, "Enforcement"); everyone else is masked from it. ``ungranted``:
        uid -> the GPU processes the queue stops for use without a grant."""
        nlog = node_logger(node)
        gpu_holders = _gpu_processes(sample)
        ran: list[Action] = []
        for uid, linux_user in sorted(self.candidates(node, sample).items()):
            user = decision.billing.get((node, linux_user))
            if user is None or user not in decision.transitions:
                continue
            transition = decision.transitions[user]
            others = tuple(minor for minor, holder in (held or {}).items() if holder != user)
            desired = desired_state(uid, linux_user, transition.current, decision.standings[user], rules.policy,
                                    gpu_holders.get(uid, ()), now, overrides.get(user), others,
                                    (ungranted or {}).get(uid, ()))
            try:
                killed = await self._converge(tick_id, session, node, desired, sample.logical_cpus, rules, ran)
                await self._write_status(session, node, desired, decision.burn.get(user, 0), now, rules)
                notice = await self._notices.action(node, desired, now, kill_grace_s=rules.policy.kill_grace_s,
                                                    tier_changed=transition.changed, killed=killed)
                if notice is not None:
                    await self._execute(tick_id, session, notice, desired, rules)
                    ran.append(notice)
            except NodeUnavailable as exc:
                nlog.warning("enforcement stopped: %s: %s", exc.outcome, exc.detail)
                break
        return len(ran)

    async def _converge(
        self, tick_id: int | None, session: NodeSession, node: str, desired: Desired, cpus: int, rules: Rules,
        ran: list[Action],
    ) -> list[int]:
        """Apply the differences, adding each verb run to ``ran``; returns the PIDs of the GPU processes it
        killed."""
        assert self._restricted is not None
        key = (node, desired.uid)
        wants_restriction = (desired.cpu_quota_ppm is not None or desired.gpu_blocked or bool(desired.gpu_masked)
                             or bool(desired.kill) or bool(desired.ungranted_kill))
        if not wants_restriction and key not in self._restricted:
            return []
        mask_only = bool(desired.gpu_masked) and desired.cpu_quota_ppm is None and not desired.gpu_blocked \
            and not desired.kill and not desired.ungranted_kill
        confirmed = self._masks.get(key)
        if (mask_only and confirmed is not None and confirmed[0] == desired.gpu_masked
                and time.monotonic() - confirmed[1] < STATUS_REFRESH_S):
            return []
        self._masks.pop(key, None)
        actual = await self._read_actual(session, desired.uid)
        if actual is None:
            return []
        killed = []
        settled = True
        for action in plan(node, desired, actual, cpus):
            status, detail = await self._execute(tick_id, session, action, desired, rules)
            ran.append(action)
            settled = settled and status in ("applied", "unchanged")
            # Only the tier's kills are announced as the tier's; the queue tells of its own (ungranted use).
            if (action.kind == "kill" and status == "applied" and detail.get("outcome") == "killed"
                    and any(str(p.pid) == action.verb[2] for p in desired.kill)):
                killed.append(int(action.verb[2]))
        if wants_restriction:
            self._restricted[key] = desired.linux_user
        else:
            self._restricted.pop(key, None)
        if mask_only and settled:
            self._masks[key] = (desired.gpu_masked, time.monotonic())
        return killed

    async def _read_actual(self, session: NodeSession, uid: int) -> Actual | None:
        timeout = self._settings.command_timeout_s
        quota = await session.run(["quota-get", str(uid)], timeout_s=timeout)
        gpu = await session.run(["gpu-state", str(uid)], timeout_s=timeout)
        try:
            blocked = parse_gpu_state(gpu.stdout)
            return Actual(uid, parse_quota(quota.stdout), blocked, parse_outside("quota-get", quota.stdout),
                          parse_outside("gpu-state", gpu.stdout), parse_denied_minors(gpu.stdout) if blocked else None)
        except FactError as exc:
            node_logger(session.node.name).warning("cannot read the state of uid %d: %s", uid, exc)
            return None

    async def _execute(
        self, tick_id: int | None, session: NodeSession, action: Action, desired: Desired, rules: Rules
    ) -> tuple[str, dict[str, Any]]:
        """Record, run and complete one verb; returns its outcome and the node's result document."""
        dry_run = rules.dry_run
        decision = await self._db(self._decisions.open, tick_id, action, desired, dry_run)
        self._metrics.action(action.kind, "dry_run" if dry_run else "planned")
        if dry_run:
            return "dry_run", {}
        timeout = self._settings.kill_timeout_s if action.kind == "kill" else self._settings.command_timeout_s
        try:
            outcome = await session.run(action.verb, stdin=action.stdin, timeout_s=timeout)
        except NodeUnavailable as exc:
            await self._db(self._decisions.close, decision, "unreachable", None, {"error": exc.detail})
            self._metrics.action(action.kind, "unreachable")
            raise
        status, detail = outcome_of(outcome)
        await self._db(self._decisions.close, decision, status, outcome.exit_status, detail)
        self._metrics.action(action.kind, status)
        node_logger(session.node.name).info("%s uid=%d: %s (%s)", action.kind, action.uid, status, action.reason)
        if restricts(action) and status in ("applied", "unchanged"):
            assert self._restricted is not None
            self._restricted[(session.node.name, action.uid)] = desired.linux_user
        return status, detail

    async def _write_status(
        self, session: NodeSession, node: str, desired: Desired, burn: int, now: datetime, rules: Rules
    ) -> None:
        fingerprint = _status_fingerprint(desired)
        last = self._status_written.get((node, desired.uid))
        # A per-file offset spreads the refreshes over a minute instead of rewriting every file in one tick.
        refresh = STATUS_REFRESH_S + zlib.crc32(f"{node}/{desired.uid}".encode()) % 60
        if last is not None and last[0] == fingerprint and time.monotonic() - last[1] < refresh:
            return
        if rules.dry_run:
            return
        document = status_document(
            desired, currency=self._currency, burn_per_hour=burn,
            blocked_threshold=rules.thresholds.blocked, now=now,
            recharge_hint=self._settings.recharge_hint,
        )
        result = await session.run(["status-write", str(desired.uid)], stdin=json.dumps(document).encode(),
                                   timeout_s=self._settings.command_timeout_s)
        if result.ok:
            self._status_written[(node, desired.uid)] = (fingerprint, time.monotonic())
        else:
            node_logger(node).warning("status-write uid=%d failed: %s", desired.uid, result.stdout[:300])
