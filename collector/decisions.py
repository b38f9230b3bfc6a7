"""From a billing user's standing to the state we want on each node: pure functions, no I/O.

A tier gives a desired state per (node, uid): a CPU quota, whether new GPU use is blocked, and which GPU
processes to kill once the grace after entering ``blocked`` has passed (10 minutes by default, as in the
seed). Enforcement (``collector.enforcement``) compares it with what the node reports and plans only
the differences, so the same decision applied twice changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from collector.config import TierPolicy
from ledger.money import format_amount
from ledger.tiers import Tier

EXEMPT = "exempt"


@dataclass(frozen=True)
class Standing:
    """A billing user's money position after this tick's postings."""

    user: str
    tier: Tier
    available: int
    exempt: bool = False

    @property
    def tier_name(self) -> str:
        return EXEMPT if self.exempt else self.tier.value


@dataclass(frozen=True)
class TierState:
    """The tier a billing user is in and since when (persisted between ticks)."""

    user: str
    tier: str
    since: datetime


@dataclass(frozen=True)
class Transition:
    previous: TierState | None
    current: TierState

    @property
    def changed(self) -> bool:
        return self.previous is not None and self.previous.tier != self.current.tier


def advance(previous: TierState | None, standing: Standing, now: datetime) -> Transition:
    """The user's tier state after this tick: ``since`` moves only when the tier changes."""
    if previous is not None and previous.tier == standing.tier_name:
        return Transition(previous, previous)
    return Transition(previous, TierState(standing.user, standing.tier_name, now))


@dataclass(frozen=True)
class ProcessRef:
    """One process, unambiguous across PID reuse and reboots."""

    boot_id: str
    pid: int
    start_ticks: int


@dataclass(frozen=True)
class Desired:
    """What should hold for one uid on one node, and why."""

    uid: int
    billing_user: str
    tier: str
    available: int
    cpu_quota_ppm: int | None
    gpu_blocked: bool
    kill_at: datetime | None
    kill: tuple[ProcessRef, ...]

    @property
    def reason(self) -> str:
        return f"tier {self.tier}, balance {format_amount(self.available)}"


def percent_to_ppm(percent: Decimal | None) -> int | None:
    """A percentage of the node's CPUs as parts per million of them (exact: at most four decimals)."""
    return None if percent is None else int(percent * 10000)


def desired_state(
    uid: int,
    state: TierState,
    standing: Standing,
    policy: TierPolicy,
    gpu_processes: tuple[ProcessRef, ...],
    now: datetime,
) -> Desired:
    """The desired state of ``uid`` on one node, given its billing user's tier and GPU processes there."""
    tier = state.tier
    quota = None
    if tier == Tier.LIMITED.value:
        quota = percent_to_ppm(policy.limited_cpu_percent)
    elif tier == Tier.BLOCKED.value:
        quota = percent_to_ppm(policy.blocked_cpu_percent)
    kill_at = state.since + timedelta(seconds=policy.kill_grace_s) if tier == Tier.BLOCKED.value else None
    return Desired(
        uid=uid,
        billing_user=standing.user,
        tier=tier,
        available=standing.available,
        cpu_quota_ppm=quota,
        gpu_blocked=tier in (Tier.LIMITED.value, Tier.BLOCKED.value),
        kill_at=kill_at,
        kill=gpu_processes if kill_at is not None and now >= kill_at else (),
    )


_NOTICES = {
    "normal": "Your balance is {balance} {currency}; GPU use is unrestricted.",
    "exempt": "You are exempt from gpuledger limits.",
    "warning": "Your balance is low: {balance} {currency}. Please recharge soon.",
    "limited": "Balance {balance} {currency}: new GPU jobs are blocked and CPU is limited. Please recharge.",
    "blocked": "Balance {balance} {currency}: you are blocked; your GPU processes will be killed at {kill_at}.",
}


def notice(desired: Desired, currency: str) -> str:
    """The one-line message a user sees for their current tier (at most 300 characters)."""
    kill_at = desired.kill_at.strftime("%Y-%m-%d %H:%M:%S %Z") if desired.kill_at else ""
    text = _NOTICES[desired.tier].format(balance=format_amount(desired.available), currency=currency, kill_at=kill_at)
    return text[:300]
