"""The GPU queue's turn in a tick (docs/queue.md, "The per-tick driver").

On each sampled node's session whose sample counted something in its drop box or holding place (``to_read``):
``gpu-requests`` (the node moves its drop box's entries into its holding place
and serves every held one, each with a handle). Then ONE transaction: the (node, Linux user) owners of the files
and of the GPU processes mapped to billing users (``ledger.directory.resolve``), and ``control.queue.tick.run``
on the operations, the samples' GPU facts and idle observations. Only once it committed, ``gpu-requests-done``
with the handles read: the node forgets them. Then, on the same sessions, each user's answer with
``queue-status UID``, when it changed or every ``ANSWER_REFRESH_S`` (like the converger's status files).

Nothing is kept in memory between ticks: a tick whose transaction failed, or a controller killed before the
commit, leaves the operations held on the nodes, and the next tick (this controller's or a restarted one's)
reads them again. An acknowledgement lost after the commit means the same operation is read again too; the
queue applies each (user, nonce) once (control.queue.replays), so a replay changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import zlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from collector.charging.samples import Sample
from collector.enforcing.decisions import NOTIFY_MAX_BYTES, ProcessRef
from collector.enforcing.notices import QueueNotice
from collector.errors import NodeUnavailable
from collector.logs import node_logger
from collector.nodes.transport.abc import NodeSession
from collector.queueing import answers
from collector.queueing.facts import linux_users, node_facts, ungranted
from collector.queueing.filed import BadReport, Filed, Report, parse_report
from collector.queueing.notices import tick_notices
from collector.queueing.ungranted import UngrantedUse
from collector.types import Db, QueueSettings, TickSettings
from control.queue import store
from control.queue import tick as queue_tick
from control.queue.records import GpuFact, GpuRef, Policy, State
from ledger import directory

log = logging.getLogger("gpuledger.controller")
ANSWER_REFRESH_S = 120
# Ended and refused requests stay in their user's answer this long, so ``gpu-request --status`` says why.
ANSWER_WINDOW = timedelta(hours=1)

Sampled = tuple[str, Sample, NodeSession | None]
Docs = list[tuple[int, dict[str, Any]]]  # (uid, queue-status document) for one node


@dataclass(frozen=True)
class Decided:
    """One queue tick: its result and each node's answers to write, (uid, document) pairs."""

    result: queue_tick.Result
    answers: Mapping[str, Sequence[tuple[int, dict[str, Any]]]]
    billing: Mapping[tuple[str, str], str]
    by_id: Mapping[int, store.Standing]
    targets: Mapping[str, set[tuple[str, int]]]
    unmapped: tuple[Filed, ...] = ()

    def held(self) -> dict[str, dict[int, str]]:
        """node -> GPU minor -> the billing user it is granted or offered to: masked for everyone else. An offer
        is masked too, so nobody else's job lands on it in the minutes before its user claims it; the GPUs a
        queued request holds for a multi-GPU start are not (backfill may use them)."""
        held: dict[str, dict[int, str]] = {}
        for r in self.result.live:
            if r.state in (State.GRANTED, State.OFFERED):
                for g in r.gpus:
                    held.setdefault(g.node, {})[g.index] = r.user
        return held


@dataclass(frozen=True)
class Turn:
    """What the rest of the tick needs of the queue's: the GPUs to mask (node -> minor -> holder), the processes
    to kill for ungranted use (node -> uid -> processes), and the notices for e-mail and webhook."""

    held: Mapping[str, Mapping[int, str]]
    kills: Mapping[str, Mapping[int, tuple[ProcessRef, ...]]]
    notices: tuple[QueueNotice, ...]


def to_read(sampled: Sequence[Sampled]) -> list[str]:
    """The nodes to ask for their drop box: each reached whose sample did not count it (and its holding place)
    empty, an unknown count (an older probe, an unlistable box) included. At 1,000 nodes a read on every node was
    most of the queue's cost to a tick; a file dropped after the sample waits for the next tick."""
    return [node for node, sample, session in sampled if session is not None and sample.gpu_requests_waiting != 0]


class QueueDriver:
    """Keeps across ticks: the Linux name of each (node, uid) seen (an answer must name the account it is for),
    and when each answer was last written."""

    def __init__(self, *, engine: Engine, db: Db, settings: TickSettings, queue: QueueSettings) -> None:
        self._engine = engine
        self._db = db
        self._settings = settings
        self._ungranted = UngrantedUse(queue)
        self._expiry_warned: set[int] = set()
        self._names: dict[tuple[str, int], str] = {}
        self._written: dict[tuple[str, int], tuple[tuple[object, ...], float]] = {}

    async def tick(self, sampled: Sequence[Sampled], billing: Mapping[tuple[str, str], str],
                   exempt: Collection[str], now: datetime, policy: Policy) -> Turn:
        """``billing``: the (node, Linux user) pairs this tick resolved already (the enforcement's decision);
        ``exempt``: the billing users exempt from enforcement; ``policy``: the queue's, from the settings version
        this tick runs on (``Rules.queue``)."""
        semaphore = asyncio.Semaphore(self._settings.concurrency)
        sessions = {node: session for node, _, session in sampled if session is not None}
        reports = await asyncio.gather(*(self._read(node, sessions[node], semaphore) for node in to_read(sampled)))
        filed = [f for report in reports for f in report]
        for node, sample, _ in sampled:
            self._names.update(linux_users(node, sample))
        self._names.update({(f.node, f.uid): f.linux_user for f in filed})
        decided = await self._db(self._decide, filed, [(n, s) for n, s, _ in sampled], billing, now, policy)
        # Committed: every operation read is done with, those that bill to nobody included (logged below).
        handles: dict[str, list[str]] = {}
        for f in filed:
            if f.handle is not None:
                handles.setdefault(f.node, []).append(f.handle)
        await asyncio.gather(*(self._acknowledge(sessions[node], held, semaphore) for node, held in handles.items()))
        for f in decided.unmapped:
            log.warning("gpu queue: %s on %s (uid %d) bills to nobody; %s op dropped", f.linux_user, f.node, f.uid,
                        str(f.body.get("op"))[:20])
        for outcome in decided.result.outcomes:
            log.info("gpu queue: %s (node %s, uid %s) %s: %s", outcome.op.user, outcome.op.origin_node,
                     outcome.op.uid, str(outcome.op.body.get("op"))[:20], outcome.outcome)
        held = decided.held()
        found = [use for node, sample, _ in sampled
                 for use in ungranted(node, sample, decided.billing, held.get(node, {}))]
        verdict = self._ungranted.assess(found, decided.result.live, exempt, now)
        news = tick_notices(decided.result, decided.by_id, now, self._expiry_warned)
        lines: dict[str, list[tuple[int, str]]] = {}
        for notice in news:
            for node, uid in sorted(decided.targets.get(notice.user, ())):
                lines.setdefault(node, []).append((uid, notice.text))
        for node, uid, notice in verdict.notices:
            lines.setdefault(node, []).append((uid, notice.text))
        await asyncio.gather(*(self._deliver(sessions[node], decided.answers.get(node, ()), lines.get(node, ()))
                               for node in sessions.keys() & (decided.answers.keys() | lines.keys())))
        return Turn(held, verdict.kills, (*news, *(n for _, _, n in verdict.notices)))

    async def _deliver(self, session: NodeSession, docs: Sequence[tuple[int, dict[str, Any]]],
                       lines: Sequence[tuple[int, str]]) -> None:
        """The answers first (a notice points at ``gpu-request --status``), then the notices' terminal lines."""
        try:
            await self._answer(session, docs)
            for uid, text in lines:
                result = await session.run(["notify", str(uid)], stdin=text.encode()[:NOTIFY_MAX_BYTES],
                                           timeout_s=self._settings.command_timeout_s)
                if not result.ok:  # an exempt or protected user is refused: their news goes by e-mail only
                    node_logger(session.node.name).info("notify uid=%d refused: %s", uid, result.stdout[:200])
        except NodeUnavailable as exc:
            node_logger(session.node.name).warning("gpu queue answers stopped: %s: %s", exc.outcome, exc.detail)

    async def _read(self, node: str, session: NodeSession, semaphore: asyncio.Semaphore) -> tuple[Filed, ...]:
        """One ``gpu-requests`` a tick: it serves at most 200 entries, held ones first, and the rest wait for the
        next tick (reading again before this tick's commit would only serve the same held ones again)."""
        nlog = node_logger(node)
        async with semaphore:
            try:
                result = await session.run(["gpu-requests"], timeout_s=self._settings.command_timeout_s)
            except NodeUnavailable as exc:
                nlog.warning("gpu-requests: %s: %s", exc.outcome, exc.detail)
                return ()
        if not result.ok:
            nlog.warning("gpu-requests exited %d: %s", result.exit_status,
                         result.stdout[:300].decode("utf-8", "replace"))
            return ()
        try:
            report = parse_report(node, result.stdout)
        except BadReport as exc:
            nlog.warning("%s", exc)
            return ()
        _log_report(report)
        return report.filed

    async def _acknowledge(self, session: NodeSession, handles: Sequence[str], semaphore: asyncio.Semaphore) -> None:
        """``gpu-requests-done``: the node forgets what this tick committed. A failure only means the entries are
        read again next tick, and replayed harmlessly."""
        nlog = node_logger(session.node.name)
        async with semaphore:
            try:
                result = await session.run(["gpu-requests-done"], stdin=json.dumps({"handles": list(handles)}).encode(),
                                           timeout_s=self._settings.command_timeout_s)
            except NodeUnavailable as exc:
                nlog.warning("gpu-requests-done: %s: %s; the node serves them again", exc.outcome, exc.detail)
                return
        if not result.ok:
            nlog.warning("gpu-requests-done exited %d: %s; the node serves them again", result.exit_status,
                         result.stdout[:300].decode("utf-8", "replace"))

    def _decide(self, filed: Sequence[Filed], sampled: Sequence[tuple[str, Sample]],
                known: Mapping[tuple[str, str], str], now: datetime, policy: Policy) -> Decided:
        wanted = {(f.node, f.linux_user) for f in filed}
        wanted |= {(node, p.user) for node, sample in sampled for p in sample.gpu_processes if p.user}
        with self._engine.begin() as conn:
            billing = {**known, **directory.resolve(conn, wanted - known.keys())}
            projects: dict[str, str | None] = {}
            ops, unmapped = [], []
            for f in filed:
                user = billing.get((f.node, f.linux_user))
                if user is None:
                    unmapped.append(f)
                    continue
                if user not in projects:
                    projects[user] = directory.get_user(conn, user).project
                ops.append(queue_tick.Op(user, projects[user], f.body, origin_node=f.node, uid=f.uid))
            facts: list[GpuFact] = []
            idle: dict[GpuRef, bool] = {}
            for node, sample in sampled:
                per_node = node_facts(node, sample, billing)
                facts.extend(per_node.facts)
                idle.update(per_node.idle)
            result = queue_tick.run(conn, ops, facts, idle, policy, now)
            standings = store.standings(conn, since=now - ANSWER_WINDOW)
        targets = self._targets(standings, billing)
        return Decided(result, self._documents(standings, targets, now), billing,
                       {s.request.id: s for rows in standings.values() for s in rows}, targets, tuple(unmapped))

    def _targets(self, standings: Mapping[str, Sequence[store.Standing]],
                 billing: Mapping[tuple[str, str], str]) -> dict[str, set[tuple[str, int]]]:
        """Each user's answers and notices go where they filed from and to the nodes of their offered and granted
        GPUs (where their jobs run), to each account whose Linux name the controller has seen there."""
        gpu_nodes: dict[str, set[str]] = {}
        targets: dict[str, set[tuple[str, int]]] = {}
        for user, rows in standings.items():
            targets[user] = {(s.origin_node, s.uid) for s in rows if s.origin_node is not None and s.uid is not None}
            for s in rows:
                if s.request.state in (State.GRANTED, State.OFFERED):
                    for g in s.request.gpus:
                        gpu_nodes.setdefault(g.node, set()).add(user)
        if gpu_nodes:
            for (node, uid), name in self._names.items():
                holder = billing.get((node, name))
                if holder is not None and holder in gpu_nodes.get(node, ()):
                    targets[holder].add((node, uid))
        for pairs in targets.values():
            pairs.intersection_update(self._names)  # an answer must name the account on that node
        return targets

    def _documents(self, standings: Mapping[str, Sequence[store.Standing]],
                   targets: Mapping[str, set[tuple[str, int]]], now: datetime) -> dict[str, Docs]:
        per_node: dict[str, Docs] = {}
        for user, pairs in targets.items():
            listed = answers.entries(standings[user])
            for node, uid in sorted(pairs):
                doc = answers.document(uid, self._names[(node, uid)], listed, now)
                per_node.setdefault(node, []).append((uid, doc))
        return per_node

    async def _answer(self, session: NodeSession, docs: Sequence[tuple[int, dict[str, Any]]]) -> None:
        node = session.node.name
        for uid, doc in docs:
            fingerprint = (doc["user"], answers.fingerprint(doc["requests"]))
            last = self._written.get((node, uid))
            # A per-file offset spreads the refreshes over a minute, as the converger does for status files.
            refresh = ANSWER_REFRESH_S + zlib.crc32(f"{node}/{uid}".encode()) % 60
            if last is not None and last[0] == fingerprint and time.monotonic() - last[1] < refresh:
                continue
            result = await session.run(["queue-status", str(uid)], stdin=json.dumps(doc).encode(),
                                       timeout_s=self._settings.command_timeout_s)
            if result.ok:
                self._written[(node, uid)] = (fingerprint, time.monotonic())
            else:
                node_logger(node).warning("queue-status uid=%d failed: %s", uid, result.stdout[:300])


def _log_report(report: Report) -> None:
    nlog = node_logger(report.node)
    for refusal in report.refused:
        nlog.warning("gpu-requests refused a file of uid %s: %s %s", refusal.uid, refusal.reason, refusal.detail[:200])
    for problem in report.malformed:
        nlog.warning("gpu-requests answered a malformed %s; skipped", problem)
    if report.more:
        nlog.info("gpu-requests: more entries wait for the next tick")
