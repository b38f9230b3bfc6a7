"""Enforcement tiers from what a wallet holds: a pure function the controller, API and hooks agree on."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ledger.money import MICRO


class Tier(enum.Enum):
    NORMAL = "normal"
    WARNING = "warning"
    LIMITED = "limited"
    BLOCKED = "blocked"


@dataclass(frozen=True)
class Thresholds:
    """Lower bounds (micro-units, inclusive) of the normal, warning and limited tiers; below ``blocked`` is
    blocked. The defaults are the replaced system's (100, 10, 0)."""

    warning: int = 100 * MICRO
    limited: int = 10 * MICRO
    blocked: int = 0


def tier_for(available: int, thresholds: Thresholds, *, exempt: bool = False, credit_limit: int | None = None) -> Tier:
    """The tier of a wallet holding ``available`` micro-units.

    A credit limit lets the wallet go that far below the blocked threshold while staying ``limited``; an
    exempt user is always ``normal`` (their usage is still charged).
    """
    if exempt:
        return Tier.NORMAL
    if available >= thresholds.warning:
        return Tier.NORMAL
    if available >= thresholds.limited:
        return Tier.WARNING
    if available >= thresholds.blocked - (credit_limit or 0):
        return Tier.LIMITED
    return Tier.BLOCKED
