"""The record of each tick in ``collector.tick``, and the database work that opens and closes it.

Opening a tick syncs the node registry with the inventory, reads what admins have set (settings version,
overrides) and inserts the tick row, in one transaction, so a tick runs on one consistent view of the
admin state. Closing it records every node's outcome and the tick's summary; old samples, decisions and
ticks are pruned at most once an hour after a close.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Engine, text

from collector.charging import retention
from collector.enforcing.admin import AdminReader, AdminState
from collector.enforcing.rules import Rules
from collector.nodes import registry
from collector.types import Node, TickSummary
from control import nodes as node_edits
from control.presence import ControlTable

log = logging.getLogger("gpuledger.controller")
PRUNE_EVERY_S = 3600


class TickLog:
    """One controller's ticks; keeps only when it last pruned and the admin reader's table checks."""

    def __init__(self, engine: Engine, controller: str) -> None:
        self._engine = engine
        self._controller = controller
        self._admin = AdminReader()
        self._edits = ControlTable(node_edits.TABLE, "admin node edits are not applied", recheck_s=60)
        self._pruned_at: float | None = None

    def open(self, nodes: Sequence[Node], at: datetime, defaults: Rules) -> tuple[int, AdminState, frozenset[str]]:
        """The new tick's id, the admin state it runs on, and the names of the nodes the registry lists."""
        with self._engine.begin() as conn:
            listed = registry.sync_inventory(conn, nodes, self._edits)
            admin = self._admin.read(conn, defaults)
            tick_id = int(
                conn.execute(
                    text("INSERT INTO collector.tick (controller, dry_run, started_at)"
                         " VALUES (:c, :d, :at) RETURNING id"),
                    {"c": self._controller, "d": admin.rules.dry_run, "at": at},
                ).scalar_one()
            )
            return tick_id, admin, listed

    def close(self, tick_id: int | None, reports: Sequence[registry.NodeReport], summary: TickSummary) -> None:
        """Record the nodes' outcomes, and the summary on the tick's row if the tick got one."""
        with self._engine.begin() as conn:
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

    def prune_if_due(self, sample_days: int, decision_days: int) -> None:
        """Apply the retention periods on the first call and then at most every ``PRUNE_EVERY_S``."""
        if self._pruned_at is not None and time.monotonic() - self._pruned_at <= PRUNE_EVERY_S:
            return
        with self._engine.begin() as conn:
            pruned = retention.prune(conn, sample_days, decision_days)
        self._pruned_at = time.monotonic()
        log.info("retention: removed %d samples older than %d days; %d decisions, %d ticks and %d"
                 " unaccounted gaps older than %d days; %d GPU hours older than %d days", pruned.samples,
                 sample_days, pruned.decisions, pruned.ticks, pruned.unaccounted, decision_days, pruned.gpu_hours,
                 retention.GPU_HOURS_KEPT_DAYS)
