"""The web console's SSH-proven login, the controller's part (docs/web-login.md).

While a browser waits on a login flow (``control.weblogin.awaiting``), every poll runs ``login-codes`` on every
listed node: the node reads and removes the codes users left in its spool, each with the Linux user the kernel
says owns its file. The (node, Linux user) pair is mapped to its billing user the way the ledger maps usage
(``ledger.directory.resolve``), and ``control.weblogin.prove`` marks the flow with that code. A node that fails
is logged and skipped; the next poll asks it again. A code whose user bills to nobody is refused and logged.

Sessions are this poller's own (its transports are not the tick's): kept open between polls, since a poll every
few seconds per node would otherwise be an SSH handshake each; a failed one is discarded and reopened.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from collector.errors import NodeUnavailable
from collector.nodes.transport.abc import Transport
from collector.types import Node
from control import weblogin
from control.presence import ControlTable
from ledger import directory

log = logging.getLogger("gpuledger.controller")
PRUNE_EVERY_S = 600.0


@dataclass(frozen=True)
class Code:
    """One code a node reported, with the node's kernel-vouched owner of its file."""

    node: str
    linux_user: str
    code: str
    written_at: datetime


@dataclass(frozen=True)
class Outcome:
    """What became of one reported code: a ``control.weblogin.ProveOutcome`` value, or ``unmapped_user``."""

    code: Code
    outcome: str
    billing_user: str | None = None


class BadReport(ValueError):
    def __init__(self, node: str, problem: str) -> None:
        super().__init__(f"{node}: login-codes answered {problem}")
        self.node = node
        self.problem = problem


def parse_report(node: str, stdout: bytes) -> tuple[list[Code], list[dict[str, Any]]]:
    """The codes and the refusals of one node's ``login-codes`` answer (untrusted: checked field by field)."""
    try:
        document = json.loads(stdout)
    except ValueError:
        raise BadReport(node, "no JSON") from None
    entries = document.get("entries") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise BadReport(node, "no list of entries")
    codes, refused = [], []
    for entry in entries:
        if isinstance(entry, dict) and "refused" in entry:
            refused.append(entry)
            continue
        user, code, written = (entry.get(k) for k in ("user", "code", "written_at")) if isinstance(entry, dict) \
            else (None, None, None)
        if not (isinstance(user, str) and user and isinstance(code, str) and isinstance(written, int)
                and not isinstance(written, bool) and 0 <= written < 2**40):
            raise BadReport(node, f"a malformed entry {str(entry)[:120]}")
        codes.append(Code(node, user, code, datetime.fromtimestamp(written, UTC)))
    return codes, refused


class WebLoginPoller:
    """Reads the nodes' login codes while a flow waits; ``poll`` is the scheduler's job."""

    def __init__(self, engine: Engine, inventory: Callable[[], Sequence[Node]],
                 transports: Callable[[Node], Transport], command_timeout_s: float, concurrency: int = 16,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.engine = engine
        self.inventory = inventory
        self.transports = transports
        self.command_timeout_s = command_timeout_s
        self.concurrency = concurrency
        self.clock = clock
        self._table = ControlTable("control.web_login", "web-login codes are not read", recheck_s=60)
        self._pruned_at: float | None = None

    def _awaiting(self) -> bool:
        with self.engine.begin() as conn:
            if not self._table.present(conn):
                return False
            now = time.monotonic()
            if self._pruned_at is None or now - self._pruned_at >= PRUNE_EVERY_S:
                weblogin.prune(conn, now=self.clock())
                self._pruned_at = now
            return weblogin.awaiting(conn, now=self.clock())

    async def poll(self) -> list[Outcome]:
        """One round over the listed nodes when a flow waits; the outcome of every code read."""
        if not await asyncio.to_thread(self._awaiting):
            return []
        semaphore = asyncio.Semaphore(self.concurrency)
        nodes = [node for node in self.inventory() if node.listed]
        reports = await asyncio.gather(*(self._read(node, semaphore) for node in nodes), return_exceptions=True)
        codes = []
        for node, report in zip(nodes, reports, strict=True):
            if isinstance(report, BaseException):  # a bug, not the node's fault: the other nodes' codes still count
                log.error("web login: reading %s failed unexpectedly", node.name, exc_info=report)
                continue
            codes.extend(report)
        return await asyncio.to_thread(self._prove, codes) if codes else []

    async def _read(self, node: Node, semaphore: asyncio.Semaphore) -> list[Code]:
        async with semaphore:
            transport = self.transports(node)
            try:
                session = await transport.session(node)
                completed = await session.run(["login-codes"], timeout_s=self.command_timeout_s)
            except NodeUnavailable as exc:
                await transport.discard(node)
                log.warning("web login: %s: %s: %s", node.name, exc.outcome, exc.detail)
                return []
        if not completed.ok:
            log.warning("web login: %s: login-codes exited %d: %s", node.name, completed.exit_status,
                        completed.stdout[:300].decode("utf-8", "replace"))
            return []
        try:
            codes, refused = parse_report(node.name, completed.stdout)
        except BadReport as exc:
            log.warning("web login: %s", exc)
            return []
        for entry in refused:
            log.warning("web login: %s refused a code file: %s", node.name, json.dumps(entry)[:200])
        return codes

    def _prove(self, codes: list[Code]) -> list[Outcome]:
        outcomes = []
        with self.engine.begin() as conn:
            billing = directory.resolve(conn, [(c.node, c.linux_user) for c in codes])
            for code in codes:
                user = billing.get((code.node, code.linux_user))
                if user is None:
                    outcomes.append(Outcome(code, "unmapped_user"))
                    continue
                try:
                    result = weblogin.prove(conn, code.code, billing_user=user, node=code.node,
                                            linux_user=code.linux_user, written_at=code.written_at, now=self.clock())
                except weblogin.BadCode:  # the node checks the shape, but its answer is untrusted
                    result = weblogin.ProveOutcome.UNKNOWN_CODE
                outcomes.append(Outcome(code, str(result), user))
        for outcome in outcomes:
            level = logging.INFO if outcome.outcome == weblogin.ProveOutcome.PROVEN else logging.WARNING
            log.log(level, "web login: %s on %s (billing user %s): %s", outcome.code.linux_user, outcome.code.node,
                    outcome.billing_user, outcome.outcome)
        return outcomes
