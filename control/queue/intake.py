"""What users ask of the queue, checked for meaning (the node's probe checked the shape, but its answer is
untrusted, and the API's bodies come straight from users): known models, a count some node can hold, hours
in range, a known node. A request that fails is refused with the reason, never dropped silently."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from control.queue.records import GpuRef, Policy
from control.queue.store import NewRequest

NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
OPS = ("request", "cancel", "release", "claim")


@dataclass(frozen=True)
class Catalog:
    """The GPUs the controller knows from the last samples: how many of each model each node has."""

    per_node: Mapping[str, Mapping[str, int]]

    @classmethod
    def of(cls, gpus: list[GpuRef]) -> Catalog:
        per_node: dict[str, dict[str, int]] = {}
        for g in gpus:
            per_node.setdefault(g.node, {}).setdefault(g.model, 0)
            per_node[g.node][g.model] += 1
        return cls(per_node)

    def fits(self, models: frozenset[str], count: int, node: str | None) -> bool:
        """Whether some node (``node``, if named) has ``count`` GPUs among ``models`` (empty: any)."""
        nodes = [node] if node is not None else list(self.per_node)
        return any(sum(n for m, n in self.per_node.get(name, {}).items() if not models or m in models) >= count
                   for name in nodes)

    @property
    def models(self) -> frozenset[str]:
        return frozenset(m for per in self.per_node.values() for m in per)


class Refused(ValueError):
    """A request that cannot be queued, and why (the user sees the message in their status)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def hours_of(value: object, policy: Policy) -> Decimal:
    """The request's hours: a decimal string (or integer) 0 < h <= the policy's maximum; None: the default."""
    if value is None:
        return policy.default_hours
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise Refused("hours must be a decimal number")
    try:
        hours = Decimal(str(value))
    except InvalidOperation:
        raise Refused(f"hours {str(value)[:20]!r} is not a number") from None
    if not hours.is_finite() or hours <= 0 or hours > policy.max_hours:
        raise Refused(f"hours must be above 0 and at most {policy.max_hours}")
    return hours.quantize(Decimal("0.01"))


def check(body: Mapping[str, Any], *, user: str, project: str | None, catalog: Catalog, policy: Policy,
          origin_node: str | None = None, uid: int | None = None) -> NewRequest:
    """The ``op: request`` body as a ``NewRequest`` for ``user``, or ``Refused``."""
    nonce = body.get("nonce")
    if not isinstance(nonce, str) or not NONCE.fullmatch(nonce):
        raise Refused("the request has no valid nonce")
    models = body.get("models") or []
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise Refused("models must be a list of model names")
    unknown = sorted(set(models) - catalog.models)
    if unknown:
        raise Refused(f"unknown GPU model {unknown[0][:40]!r}; known: {', '.join(sorted(catalog.models))}")
    count = body.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 64:
        raise Refused("count must be a whole number from 1 to 64")
    node = body.get("node")
    if node is not None and (not isinstance(node, str) or node not in catalog.per_node):
        raise Refused(f"unknown node {str(node)[:40]!r}")
    if count > policy.max_gpus_per_user:
        raise Refused(f"at most {policy.max_gpus_per_user} GPUs per user")
    if not catalog.fits(frozenset(models), count, node):
        raise Refused(f"no node has {count} GPU(s) of {', '.join(models) or 'any model'}")
    return NewRequest(user=user, project=project, nonce=nonce, models=tuple(sorted(set(models))), count=count,
                      hours=hours_of(body.get("hours"), policy), node=node, run=bool(body.get("run", False)),
                      origin_node=origin_node, uid=uid)


def target(body: Mapping[str, Any], *, required: bool) -> int | None:
    """The ``id`` of a cancel, release or claim: an integer, or None where allowed (release: all)."""
    value = body.get("id")
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise Refused("id must be a request number")
    return value
