"""Enforcement overrides: what one means for a billing user (pure functions over immutable records), and the
store, ``control.enforcement_override``, that the API adds them to and the controller reads.

The newest row per user wins, even once it has expired (a newer row replaces an older one, it does not stack
on it), and a row whose ``until`` has passed no longer applies:

* ``exempt``: the user counts as exempt (tier ``exempt``): nothing is enforced on them anywhere.
* ``apply``: the user's money tier is enforced even if the ledger marks them exempt.
* ``lift``: the tier stands, but its restrictions are lifted until ``until``, or, without ``until``,
  until the user's next tier change after the override was made.

``exempt`` and ``apply`` change the tier the controller tracks (so users hear of it, and a kill grace
starts when ``apply`` makes someone blocked); ``lift`` changes only the desired state on the nodes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

_COLUMNS = "id, billing_user, action, reason, until, at, actor"


@dataclass(frozen=True)
class Override:
    id: int
    user: str
    action: str
    reason: str
    until: datetime | None
    at: datetime

    def active(self, now: datetime) -> bool:
        return self.until is None or now < self.until

    def describe(self) -> str:
        return f"override #{self.id} {self.action}: {self.reason}"


def override_tier(tier: str, money_tier: str, override: Override | None, now: datetime) -> str:
    """The tier to track for a user whose standing gives ``tier`` (``exempt`` for a ledger exemption) and
    whose wallet alone gives ``money_tier``."""
    if override is None or not override.active(now):
        return tier
    if override.action == "exempt":
        return "exempt"
    if override.action == "apply":
        return money_tier
    return tier


def lifts(override: Override | None, tier_since: datetime, now: datetime) -> bool:
    """Whether ``override`` lifts the restrictions of a user who has been in their tier since ``tier_since``."""
    if override is None or override.action != "lift" or not override.active(now):
        return False
    return override.until is not None or tier_since <= override.at


def grace_start(override: Override | None, tier_since: datetime, now: datetime) -> datetime:
    """When a blocked user's kill grace starts: on entering ``blocked``, or when a lift of it ended, so a
    lift never ends in a kill without the grace."""
    if override is not None and override.action == "lift" and override.until is not None and not override.active(now):
        return max(tier_since, override.until)
    return tier_since


def applying(override: Override | None, now: datetime) -> Override | None:
    """``override`` if it is in force at ``now`` (what a decision records as its cause), else None."""
    return override if override is not None and override.active(now) else None


# -- the store ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Posted:
    """An override as stored: what it means, and who posted it (the rules do not depend on who)."""

    override: Override
    actor: str


def _posted(row: Sequence[Any]) -> Posted:
    return Posted(Override(id=int(row[0]), user=str(row[1]), action=str(row[2]), reason=str(row[3]), until=row[4],
                           at=row[5]), actor=str(row[6]))


def recent(conn: Connection, limit: int = 500) -> list[Posted]:
    """The newest ``limit`` overrides of any user, newest first."""
    rows = conn.execute(text(f"SELECT {_COLUMNS} FROM control.enforcement_override"  # noqa: S608 (constant column list)
                             " ORDER BY id DESC LIMIT :n"), {"n": limit})
    return [_posted(r) for r in rows]


def add(conn: Connection, user: str, action: str, reason: str, until: datetime | None, actor: str) -> Posted:
    """A new override of ``user`` (a billing user: the table's foreign key refuses others); it replaces the
    user's previous one from the controller's next tick on."""
    row = conn.execute(text("INSERT INTO control.enforcement_override (billing_user, action, reason, until, actor)"  # noqa: S608 (constant column list)
                            f" VALUES (:u, :a, :r, :t, :actor) RETURNING {_COLUMNS}"),
                       {"u": user, "a": action, "r": reason, "t": until, "actor": actor}).one()
    return _posted(row)
