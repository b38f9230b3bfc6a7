"""What the decision phase reads and keeps: who a Linux user bills to, standings, burn rates, tier states.

Reads go through the ledger's own service (``Ledger.standings``) where one exists; the Linux-user
resolution and the burn rate are single batch queries over the ledger tables (read-only), so a tick
costs a handful of round trips whatever the number of nodes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.engine import Connection

from collector.enforcing.decisions import Standing, TierState, Transition
from ledger.service import Ledger
from ledger.tiers import Thresholds, tier_for

_RESOLVE = text(
    """
    SELECT x.node, x.lu, bu.name
      FROM json_to_recordset(CAST(:pairs AS json)) AS x(node text, lu text)
      LEFT JOIN LATERAL (SELECT m.user_id FROM ledger.node_user_map m
                          WHERE m.linux_user = x.lu AND m.node IN (x.node, '*')
                          ORDER BY m.node = '*' LIMIT 1) m ON true
      JOIN ledger.billing_user bu
        ON bu.id = coalesce(m.user_id, (SELECT id FROM ledger.billing_user WHERE name = x.lu))
    """
)


def resolve(conn: Connection, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """(node, Linux user) -> billing user, as the ledger resolves them (node map, then ``*``, then same name)."""
    pairs = sorted(set(pairs))
    if not pairs:
        return {}
    # One JSON parameter: psycopg adapts text arrays element by element in Python (10,000 pairs at 1,000 nodes).
    rows = conn.execute(_RESOLVE, {"pairs": json.dumps([{"node": n, "lu": lu} for n, lu in pairs])})
    return {(row.node, row.lu): row.name for row in rows}


def standings(ledger: Ledger, users: Sequence[str], thresholds: Thresholds) -> dict[str, Standing]:
    """Each user's balance, and the tier it gives under ``thresholds`` (this tick's, which an admin's
    settings version may have changed from the ledger's configured ones)."""
    balances = ledger.standings(sorted(set(users)))
    return {
        name: Standing(name, tier_for(b.available, thresholds, credit_limit=b.credit_limit), b.available, b.exempt)
        for name, b in balances.items()
    }


def burn_per_hour(conn: Connection, users: Sequence[str], now: datetime) -> dict[str, int]:
    """Micro-units each billing user was charged over the hour before ``now``."""
    if not users:
        return {}
    rows = conn.execute(
        text(
            "SELECT bu.name, s.spent FROM (SELECT user_id, sum(amount) AS spent FROM ledger.usage"
            "  WHERE interval_end > CAST(:now AS timestamptz) - interval '1 hour'"
            "    AND user_id IN (SELECT id FROM ledger.billing_user WHERE name = ANY(:users))"
            "  GROUP BY user_id) s JOIN ledger.billing_user bu ON bu.id = s.user_id"
        ),
        {"now": now, "users": list(users)},
    )
    return {row.name: int(row.spent) for row in rows}


class BurnRates:
    """``burn_per_hour``, read again at most every ``refresh_s`` (a user not read yet is read at once).

    The query reads an hour of usage rows, about a million at 1,000 nodes, while the figure only feeds the
    status files, which are rewritten every few minutes (``collector.tick.STATUS_REFRESH_S``) anyway.
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
