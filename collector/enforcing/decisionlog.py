"""The record of every enforcement decision, written before its verb runs and completed after.

A decision row exists before anything reaches a node (outcome ``planned``, or ``dry_run`` when nothing
will run), so even a controller killed mid-action leaves no action without its record. The log also
tells which (node, uid) pairs the controller has restricted and not yet lifted: those are the pairs whose
actual state each tick reads, besides the ones that should be restricted now.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, text

from collector.enforcing.decisions import Desired
from collector.enforcing.planner import LIFTING, RESTRICTING, Action
from collector.types import CommandResult

_OUTCOME_BY_EXIT = {0: "applied", 2: "refused", 3: "failed", 4: "unsupported"}


def outcome_of(result: CommandResult) -> tuple[str, dict[str, Any]]:
    """Decision outcome and detail from a node command's result document (docs/node-command.md)."""
    try:
        document = json.loads(result.stdout)
    except ValueError:
        document = {"unparsable_output": result.stdout[:500].decode("utf-8", "replace")}
    if not isinstance(document, dict):
        document = {"unexpected_output": str(document)[:500]}
    outcome = _OUTCOME_BY_EXIT.get(result.exit_status, "failed")
    if outcome == "applied" and document.get("changed") is False:
        outcome = "unchanged"
    return outcome, document


class DecisionLog:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def open(self, tick_id: int | None, action: Action, desired: Desired | None, dry_run: bool) -> int:
        override = desired.override if desired else None
        with self._engine.begin() as conn:
            return int(
                conn.execute(
                    text(
                        "INSERT INTO collector.decision (tick_id, node, uid, linux_user, billing_user, tier, balance,"
                        " verb, reason, dry_run, outcome, override_id, override_reason) VALUES (:tick, :node, :uid,"
                        " :linux, :user, :tier, :balance, :verb, :reason, :dry, :outcome, :oid, :oreason)"
                        " RETURNING id"
                    ),
                    {
                        "tick": tick_id, "node": action.node, "uid": action.uid,
                        "linux": desired.linux_user if desired else None,
                        "user": desired.billing_user if desired else None, "tier": desired.tier if desired else None,
                        "balance": desired.available if desired else None, "verb": " ".join(action.verb),
                        "reason": action.reason, "dry": dry_run, "outcome": "dry_run" if dry_run else "planned",
                        "oid": override.id if override else None, "oreason": override.reason if override else None,
                    },
                ).scalar_one()
            )

    def close(self, decision_id: int, outcome: str, exit_status: int | None, detail: Mapping[str, Any]) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE collector.decision SET outcome = :o, exit_status = :s, detail = CAST(:d AS jsonb),"
                    " finished_at = now() WHERE id = :id"
                ),
                {"o": outcome, "s": exit_status, "d": json.dumps(detail, default=str), "id": decision_id},
            )

    def restricted(self) -> dict[tuple[str, int], str]:
        """(node, uid) -> Linux user, for pairs whose latest applied quota or GPU verb restricted them."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT DISTINCT ON (node, uid, split_part(verb, '-', 1)) node, uid, linux_user, verb"
                    " FROM collector.decision"
                    " WHERE outcome IN ('applied', 'unchanged') AND uid IS NOT NULL AND linux_user IS NOT NULL"
                    " AND split_part(verb, ' ', 1) = ANY(:verbs)"
                    " ORDER BY node, uid, split_part(verb, '-', 1), id DESC"
                ),
                {"verbs": sorted(RESTRICTING | LIFTING)},
            )
            return {(row.node, row.uid): row.linux_user for row in rows if row.verb.split()[0] in RESTRICTING}

    def notified_since(self, node: str, uid: int, since: datetime) -> bool:
        """Whether a notice reached (node, uid) while blocked since ``since``: after a restart, the memory
        of which pending kills were announced."""
        with self._engine.connect() as conn:
            return bool(conn.execute(
                text(
                    "SELECT EXISTS (SELECT 1 FROM collector.decision WHERE node = :n AND uid = :u AND at >= :since"
                    " AND tier = 'blocked' AND split_part(verb, ' ', 1) = 'notify'"
                    " AND outcome IN ('applied', 'unchanged'))"
                ),
                {"n": node, "u": uid, "since": since},
            ).scalar())


def restricts(action: Action) -> bool:
    """Whether the action puts a restriction in place (a lift, a kill or a notice does not)."""
    return action.kind in RESTRICTING
