"""The queue's immutable records: GPUs, requests, the policy, and the decisions the allocator makes."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from types import MappingProxyType


class State(enum.StrEnum):
    QUEUED = "queued"
    OFFERED = "offered"
    GRANTED = "granted"
    ENDED = "ended"
    REFUSED = "refused"


LIVE = frozenset({State.QUEUED, State.OFFERED, State.GRANTED})


@dataclass(frozen=True, order=True)
class GpuRef:
    """One GPU: its node, its NVML index (= the ``/dev/nvidiaN`` minor) and its model (the pool's key)."""

    node: str
    index: int
    model: str
    # Hashed once: the allocator keys sets and maps by GPU some 50,000 times a tick at 8,000 GPUs, and the
    # dataclass's own hash builds the tuple of the fields each time (a sixth of a tick's CPU).
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.node, self.index, self.model)))

    def __hash__(self) -> int:
        return self._hash


@dataclass(frozen=True)
class GpuFact:
    """What the last sample says of one GPU: which billing users have compute processes on it, and whether
    any process on it belongs to nobody we can map (then it is never free: fail closed)."""

    ref: GpuRef
    users: frozenset[str] = frozenset()
    unknown_use: bool = False

    @property
    def busy(self) -> bool:
        return bool(self.users) or self.unknown_use


@dataclass(frozen=True)
class Request:
    """One request and where it stands. ``gpus`` are the offered or granted GPUs (or, while queued, the ones
    it holds for a multi-GPU start); ``ends`` is the lease's end once granted."""

    id: int
    user: str
    project: str | None
    models: frozenset[str]
    count: int
    hours: Decimal
    node: str | None
    created_at: datetime
    state: State = State.QUEUED
    gpus: tuple[GpuRef, ...] = ()
    offer_expires: datetime | None = None
    granted_at: datetime | None = None
    ends: datetime | None = None
    boost_hours: int = 0
    reason: str = ""

    @property
    def live(self) -> bool:
        return self.state in LIVE

    @property
    def duration(self) -> timedelta:
        return timedelta(seconds=int(self.hours * 3600))

    def matches(self, gpu: GpuRef) -> bool:
        """Whether ``gpu`` could serve this request (its model is asked for, or any; its node, if one is named)."""
        return (not self.models or gpu.model in self.models) and (self.node is None or gpu.node == self.node)


@dataclass(frozen=True)
class Policy:
    """The queue's rules (docs/queue.md, "Configuration"); times in seconds, the weights in hours of waiting."""

    offer_s: int = 900
    default_hours: Decimal = Decimal(4)
    max_hours: Decimal = Decimal(168)
    age_cap_hours: Decimal = Decimal(168)
    share_boost_hours: Decimal = Decimal(24)
    admin_boost_cap_hours: int = 168
    half_life_s: int = 7 * 86400
    max_gpus_per_user: int = 8
    max_gpus_per_project: int = 16
    max_queued_per_user: int = 4
    shares: Mapping[str, Decimal] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class Offer:
    request_id: int
    gpus: tuple[GpuRef, ...]
    expires: datetime


@dataclass(frozen=True)
class Grant:
    request_id: int
    gpus: tuple[GpuRef, ...]
    ends: datetime


@dataclass(frozen=True)
class Hold:
    """A queued multi-GPU request keeps these GPUs while the rest of its count frees up (``completes``: the
    declared end by which the last one should be free, None when some holder declared none)."""

    request_id: int
    gpus: tuple[GpuRef, ...]
    completes: datetime | None


@dataclass(frozen=True)
class End:
    request_id: int
    reason: str


@dataclass(frozen=True)
class Estimate:
    """Where a queued request stands: its place in its pool's order, and when it should start, with why."""

    request_id: int
    position: int
    eta: datetime | None
    basis: str


@dataclass(frozen=True)
class Decisions:
    """Everything one tick changes; ``store.apply`` writes it in one transaction."""

    offers: tuple[Offer, ...] = ()
    grants: tuple[Grant, ...] = ()
    holds: tuple[Hold, ...] = ()
    ends: tuple[End, ...] = ()
    estimates: tuple[Estimate, ...] = ()
