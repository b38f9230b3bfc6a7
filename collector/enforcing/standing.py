"""What the decision phase reads and keeps: who a Linux user bills to, standings, burn rates, tier states.

The ledger owns the first three (``ledger.directory.resolve``, ``ledger.reports.standings`` (what
``Ledger.standings`` returns), ``ledger.reports.burn_per_hour``: one query each, whatever the number of
nodes); this module hands them to the controller in its terms and keeps the controller's own tier states
(``collector.tier_state``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.engine import Connection

from collector.enforcing.decisions import Standing, TierState, Transition
from ledger import directory, reports
from ledger.tiers import Thresholds


def resolve(conn: Connection, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """(node, Linux user) -> billing user, as the ledger resolves them (``ledger.directory.resolve``)."""
    return directory.resolve(conn, pairs)


def standings(conn: Connection, users: Sequence[str], thresholds: Thresholds) -> dict[str, Standing]:
    """Each user's balance, and the tier it gives under ``thresholds`` (this tick's, which an admin's
    settings version may have changed from the ledger's configured ones): the wallet's tier, as the ledger
    computed it (``ledger.reports.standings``, what ``Ledger.standings`` returns; an exempt user's is shown
    as exempt, and enforced only under an ``apply`` override). On ``conn``, so the decision step is one
    transaction."""
    balances = reports.standings(conn, sorted(set(users)), thresholds)
    return {name: Standing(name, b.wallet_tier, b.available, b.exempt) for name, b in balances.items()}


def burn_per_hour(conn: Connection, users: Sequence[str], now: datetime) -> dict[str, int]:
    """Micro-units each billing user was charged over the hour before ``now`` (``ledger.reports``)."""
    return reports.burn_per_hour(conn, users, now)


class BurnRates:
    """``burn_per_hour``, read again at most every ``refresh_s`` (a user not read yet is read at once).

    The query reads an hour of usage rows, about a million at 1,000 nodes, while the figure only feeds the
    status files, which are rewritten every few minutes (``collector.enforcing.converge.STATUS_REFRESH_S``) anyway.
    """

    def __init__(self, refresh_s: float = 300.0, *,
                 read: Callable[[Connection, Sequence[str], datetime], dict[str, int]] = burn_per_hour,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.refresh_s = refresh_s
        self._read = read
        self._clock = clock
        self._rates: dict[str, int] = {}
        self._read_at: float | None = None

    def get(self, conn: Connection, users: Sequence[str], now: datetime) -> dict[str, int]:
        stale = self._read_at is None or self._clock() - self._read_at >= self.refresh_s
        unread = list(users) if stale else [u for u in users if u not in self._rates]
        if unread:
            rates = self._read(conn, unread, now)
            if stale:
                self._rates, self._read_at = {}, self._clock()
            self._rates.update({u: rates.get(u, 0) for u in unread})
        return {u: self._rates[u] for u in users}


def load_tier_states(conn: Connection, users: Sequence[str]) -> dict[str, TierState]:
    rows = conn.execute(
        text("SELECT billing_user, tier, since FROM collector.tier_state WHERE billing_user = ANY(:users)"),
        {"users": list(users)},
    )
    return {row.billing_user: TierState(row.billing_user, row.tier, row.since) for row in rows}


def save_transitions(conn: Connection, transitions: Sequence[Transition]) -> None:
    changed = [t.current for t in transitions if t.previous is None or t.changed]
    if not changed:
        return
    conn.execute(
        text(
            "INSERT INTO collector.tier_state (billing_user, tier, since) VALUES (:user, :tier, :since)"
            " ON CONFLICT (billing_user) DO UPDATE SET tier = EXCLUDED.tier, since = EXCLUDED.since, updated_at = now()"
        ),
        [{"user": s.user, "tier": s.tier, "since": s.since} for s in changed],
    )
