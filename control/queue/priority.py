"""Fair-share order (docs/queue.md, "Order"): priority, in hours of waiting, is

    min(wait, age cap) + share boost x 2^(-U/S) + min(admin boost, its cap)

U is the entity's share of everyone's decayed, price-weighted GPU use (``ledger.fairshare``: money charged for
GPUs, halved every 7 days), S its share of the shares of the entities in play (equal unless an admin set
shares per project). The entity is the project a user bills to, else the user. Ties go first come, first
served. Priority orders requests, it never moves money, so it is a float.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal

from control.queue.records import Policy, Request


def entity(request: Request) -> str:
    """Whose usage and share count for ``request``: its project, else its user."""
    return f"project:{request.project}" if request.project else f"user:{request.user}"


def factors(requests: Iterable[Request], usage: Mapping[str, Decimal], policy: Policy) -> dict[str, float]:
    """entity -> 2^(-U/S) for every entity with a request; ``usage`` is the decayed charge per entity."""
    active = {entity(r) for r in requests} | {e for e, u in usage.items() if u > 0}
    total_usage = sum((max(Decimal(0), usage.get(e, Decimal(0))) for e in active), Decimal(0))
    total_share = sum((policy.shares.get(e, Decimal(1)) for e in active), Decimal(0))
    result = {}
    for name in active:
        share = policy.shares.get(name, Decimal(1)) / total_share if total_share else Decimal(1)
        used = max(Decimal(0), usage.get(name, Decimal(0))) / total_usage if total_usage else Decimal(0)
        result[name] = 2.0 ** float(-used / share) if share > 0 else 0.0
    return result


def priority(request: Request, factor: float, now: datetime, policy: Policy) -> float:
    """The request's priority in hours of waiting (module docstring)."""
    wait_h = max(0.0, (now - request.created_at).total_seconds() / 3600)
    boost = max(-policy.admin_boost_cap_hours, min(request.boost_hours, policy.admin_boost_cap_hours))
    return min(wait_h, float(policy.age_cap_hours)) + float(policy.share_boost_hours) * factor + boost


def order(requests: Sequence[Request], usage: Mapping[str, Decimal], now: datetime, policy: Policy) -> list[Request]:
    """``requests`` best first: highest priority, then the earliest, then the lowest id."""
    fs = factors(requests, usage, policy)
    return sorted(requests, key=lambda r: (-priority(r, fs[entity(r)], now, policy), r.created_at, r.id))
