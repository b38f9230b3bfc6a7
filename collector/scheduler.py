"""The tick loop: APScheduler 3.x on asyncio, one tick per interval, never two at once, behind the lease.

``max_instances=1`` means a tick still running when the next is due makes that one a misfire;
``coalesce=True`` folds any backlog of misfires into one run; ``misfire_grace_time`` is half an interval,
so a late tick still runs but never two in a row to catch up (the counters make catching up unnecessary).
Before each tick the PostgreSQL lease decides whether this process is the active controller; a standby
does nothing but try again next tick, so it takes over within two ticks of the active one dying. When
the database cannot be reached the tick is skipped: nothing is enforced blind, and the next good tick
charges the whole interval from the cumulative counters.

A second job polls for connection tests the API requested (``collector.nodes.conntest``), every few seconds so
"test connection now" answers promptly, but only while the last tick found this process the active one. A third,
at the same pace and under the same rule, reads web-login codes from the nodes while a console login waits
(``collector.nodes.weblogin``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.exc import DBAPIError

from collector.metrics import Metrics
from collector.nodes.conntest import ConnectionTests
from collector.nodes.lease import Lease
from collector.nodes.weblogin import WebLoginPoller
from collector.tick import Controller
from collector.types import Node, TickSummary

log = logging.getLogger("gpuledger.scheduler")
Report = Callable[[TickSummary | None, str], None]


class TickLoop:
    """Runs ``controller.tick`` every ``interval_s`` seconds while this process holds the lease."""

    def __init__(
        self,
        controller: Controller,
        lease: Lease,
        inventory: Callable[[], Sequence[Node]],
        interval_s: float,
        metrics: Metrics,
        report: Report,
        connection_tests: ConnectionTests | None = None,
        connection_test_poll_s: float = 2.0,
        web_login: WebLoginPoller | None = None,
    ) -> None:
        self.controller = controller
        self.lease = lease
        self.inventory = inventory
        self.interval_s = interval_s
        self.metrics = metrics
        self.report = report
        self.connection_tests = connection_tests
        self.connection_test_poll_s = connection_test_poll_s
        self.web_login = web_login
        self.ticks = 0
        self.active = False

    async def run_once(self) -> TickSummary | None:
        """One scheduled run: take or confirm the lease, then tick. Returns the summary, or None if no tick ran."""
        try:
            active = await asyncio.to_thread(self.lease.acquire)
        except DBAPIError as exc:
            self.active = False
            self.metrics.lease_held.set(0)
            self.metrics.database_up.set(0)
            self.report(None, f"database unreachable, tick skipped: {type(exc.orig).__name__}")
            return None
        self.active = active
        self.metrics.lease_held.set(1 if active else 0)
        if not active:
            self.report(None, "standby: another controller holds the lease")
            return None
        summary = await self.controller.tick(self.inventory())
        self.ticks += 1
        self.report(summary, "")
        return summary

    async def poll_connection_tests(self) -> None:
        """Run requested connection tests, on the active controller only; a database error waits for the next poll."""
        if self.connection_tests is not None:
            await self._fast("connection tests", self.connection_tests.poll)

    async def poll_web_login(self) -> None:
        """Read the nodes' web-login codes while a login waits, on the active controller only."""
        if self.web_login is not None:
            await self._fast("web login", self.web_login.poll)

    async def _fast(self, what: str, poll: Callable[[], Awaitable[object]]) -> None:
        if not self.active:
            return
        try:
            await poll()
        except DBAPIError as exc:
            log.warning("%s: database unreachable: %s", what, type(exc.orig).__name__)

    def schedule(self, scheduler: AsyncIOScheduler) -> None:
        scheduler.add_job(
            self.run_once,
            IntervalTrigger(seconds=self.interval_s),
            id="gpuledger-tick",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(self.interval_s / 2)),
            next_run_time=datetime.now(UTC),
        )
        for job, name, present in ((self.poll_connection_tests, "connection-tests", self.connection_tests),
                                   (self.poll_web_login, "web-login", self.web_login)):
            if present is not None:
                scheduler.add_job(
                    job,
                    IntervalTrigger(seconds=self.connection_test_poll_s),
                    id=f"gpuledger-{name}",
                    max_instances=1,
                    coalesce=True,
                    misfire_grace_time=max(1, int(self.connection_test_poll_s)),
                )

    async def run(self, stop: asyncio.Event) -> None:
        """Tick until ``stop`` is set; then give the lease back so a standby can take over at once."""
        scheduler = AsyncIOScheduler(timezone=UTC)
        self.schedule(scheduler)
        scheduler.start()
        try:
            await stop.wait()
        finally:
            scheduler.shutdown(wait=False)
            await asyncio.to_thread(self.lease.release)
