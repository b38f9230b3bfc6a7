""""Test connection now": connection tests the API requests and the active controller runs. The API cannot
open SSH, so a request is a row of ``control.connection_test`` (``control.connections``) that the controller
claims (``started_at``), runs and finishes (``finished_at``, ``outcome``, ``detail``).

A test connects the way a tick does (the same transport class and settings: the host key checked against
the managed known_hosts, never relaxed), but on its own connection, closed afterwards, so it proves that a
new connection works and never disturbs a tick's. It runs ``sample`` and parses it, and keeps nothing of
it: a connection test charges nothing. A claim left unfinished (its controller died) is claimed again once
it is ``STALE_AFTER_S`` old.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from collector.charging.samples import BadSample, parse_sample
from collector.errors import NodeUnavailable
from collector.nodes.transport.abc import Transport
from collector.types import Node, Outcome
from control import connections
from control.presence import ControlTable

log = logging.getLogger("gpuledger.controller")
CLAIM_BATCH = 20
STALE_AFTER_S = 600
# What the API shows: ok, failed, hostkey_mismatch, timeout or unknown_node.
_OUTCOMES: dict[str, str] = {Outcome.HOSTKEY_MISMATCH: "hostkey_mismatch", Outcome.TIMEOUT: "timeout"}


@dataclass(frozen=True)
class TestResult:
    id: int
    node: str
    outcome: str
    latency_ms: int
    error: str | None = None
    hostname: str | None = None

    def detail(self) -> dict[str, Any]:
        return {"latency_ms": self.latency_ms, "error": self.error, "hostname": self.hostname}


class ConnectionTests:
    """Claims pending tests and runs them; ``poll`` is the scheduler's job."""

    def __init__(
        self,
        engine: Engine,
        inventory: Callable[[], Sequence[Node]],
        transports: Callable[[Node], Transport],
        command_timeout_s: float,
    ) -> None:
        self.engine = engine
        self.inventory = inventory
        self.transports = transports
        self.command_timeout_s = command_timeout_s
        self._table = ControlTable("control.connection_test", "connection tests are not run", recheck_s=60)

    def _claim(self) -> list[tuple[int, str]]:
        with self.engine.begin() as conn:
            if not self._table.present(conn):
                return []
            return connections.claim(conn, STALE_AFTER_S, CLAIM_BATCH)

    def _finish(self, result: TestResult) -> None:
        with self.engine.begin() as conn:
            connections.finish(conn, result.id, result.outcome, result.detail())

    async def poll(self) -> list[TestResult]:
        """Run every pending test (up to a batch) at once; returns their results."""
        claimed = await asyncio.to_thread(self._claim)
        if not claimed:
            return []
        nodes = {n.name: n for n in self.inventory()}
        outcomes = await asyncio.gather(*(self._test(test_id, nodes.get(name), name) for test_id, name in claimed),
                                        return_exceptions=True)
        results = []
        for (test_id, name), outcome in zip(claimed, outcomes, strict=True):
            if isinstance(outcome, BaseException):  # a bug, not the node's fault: finish the request anyway
                log.error("connection test %d of %s failed unexpectedly", test_id, name, exc_info=outcome)
                outcome = TestResult(test_id, name, "failed", 0, f"internal error: {type(outcome).__name__}")
            results.append(outcome)
        for result in results:
            await asyncio.to_thread(self._finish, result)
            log.info("connection test %d of %s: %s", result.id, result.node, result.outcome)
        return results

    async def _test(self, test_id: int, node: Node | None, name: str) -> TestResult:
        if node is None:
            return TestResult(test_id, name, "unknown_node", 0, f"{name!r} is not in the inventory")
        started = time.monotonic()

        def result(outcome: str, error: str | None = None, hostname: str | None = None) -> TestResult:
            return TestResult(test_id, name, outcome, int((time.monotonic() - started) * 1000), error, hostname)

        transport = self.transports(node)
        try:
            session = await transport.session(node)
            completed = await session.run(["sample"], timeout_s=self.command_timeout_s)
        except NodeUnavailable as exc:
            return result(_OUTCOMES.get(exc.outcome, "failed"), f"{exc.outcome}: {exc.detail}")
        finally:
            await transport.discard(node)
        if not completed.ok:
            return result("failed", f"{Outcome.NONZERO_EXIT}: exit {completed.exit_status}: {completed.stderr[:300]}")
        try:
            sample = parse_sample(completed.stdout)
        except BadSample as exc:
            return result("failed", f"{Outcome.BAD_OUTPUT}: {exc}")
        return result("ok", hostname=sample.hostname)
