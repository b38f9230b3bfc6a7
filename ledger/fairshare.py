"""Decayed GPU use per fair-share entity, for the GPU queue's order (control/queue/priority.py).

An entity is the project a user bills to, else the user (``project:NAME`` / ``user:NAME``). Its use is the
money charged for GPUs, used (``gpu``) or held by a grant unused (``reservation``): GPU-hours weighted by their
price, a GPU kept from the others counting as one used. Each hour's charge is halved every ``half_life_s``
before ``now``: Slurm's decayed usage with its 7-day default. Hours older than ``HORIZON_HALF_LIVES`` half-lives
weigh under 0.4 % and are not read. The result only orders requests; nothing is billed from it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.engine import Connection

HORIZON_HALF_LIVES = 8

_READ = text(
    """
    SELECT CASE WHEN p.name IS NOT NULL THEN 'project:' || p.name ELSE 'user:' || u.name END AS entity,
           sum(h.amount * power(0.5::numeric, (extract(epoch FROM (:now - h.hour)) / :half_life)::numeric))
               AS decayed
      FROM ledger.usage_hourly h
      JOIN ledger.billing_user u ON u.id = h.user_id
      LEFT JOIN ledger.project p ON p.id = u.project_id
     WHERE h.resource IN ('gpu', 'reservation') AND h.hour > :horizon AND h.hour <= :now
     GROUP BY 1
    """
)


def decayed_gpu_charges(conn: Connection, *, half_life_s: int, now: datetime) -> dict[str, Decimal]:
    """entity -> its decayed GPU charge in micro-units of the currency (module docstring)."""
    horizon = now - timedelta(seconds=half_life_s * HORIZON_HALF_LIVES)
    rows = conn.execute(_READ, {"now": now, "half_life": half_life_s, "horizon": horizon})
    return {str(row.entity): Decimal(row.decayed) for row in rows}
