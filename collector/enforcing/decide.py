"""The decision step of a tick: who each Linux user on a node bills to, their standings and burn rates, and
their tier transitions (saved before anything is enforced, so a kill grace survives a restart)."""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine

from collector.enforcing import standing
from collector.enforcing.decisions import Standing, Transition, advance
from control.overrides import Override, override_tier
from ledger.tiers import Thresholds


@dataclass(frozen=True)
class Decision:
    """What the decision step settled for this tick."""

    billing: Mapping[tuple[str, str], str]  # (node, Linux user) -> billing user
    standings: Mapping[str, Standing]
    transitions: Mapping[str, Transition]
    burn: Mapping[str, int]  # billing user -> burn rate per hour, in micro-units


def decide(
    engine: Engine, burn_rates: standing.BurnRates, pairs: Set[tuple[str, str]],
    thresholds: Thresholds, overrides: Mapping[str, Override], now: datetime,
) -> Decision:
    """The decision for the (node, Linux user) ``pairs`` to converge this tick (blocking: run it on the pool)."""
    # One transaction: the reads are one statement each, and the tier states are saved before anything is
    # enforced (READ COMMITTED: each read sees what is committed when it runs, as when they were separate).
    with engine.begin() as conn:
        billing = standing.resolve(conn, pairs)
        users = sorted(set(billing.values()))
        standings = standing.standings(conn, users, thresholds)
        burn = burn_rates.get(conn, users, now)
        previous = standing.load_tier_states(conn, users)
        transitions = {
            u: advance(previous.get(u), u, override_tier(standings[u].tier_name, standings[u].tier.value,
                                                         overrides.get(u), now), now)
            for u in users if u in standings
        }
        standing.save_transitions(conn, list(transitions.values()))
    return Decision(billing, standings, transitions, burn)
