"""From a billing user's standing to the state we want on each node: pure functions, no I/O.

A tier gives a desired state per (node, uid): a CPU quota, whether new GPU use is blocked, and which GPU
processes to kill once the grace after entering ``blocked`` has passed (10 minutes by default, as in the
seed). Enforcement (``collector.enforcing.planner``) compares it with what the node reports and plans only
the differences, so the same decision applied twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from collector.config import TierPolicy
from control.overrides import Override, applying, grace_start, lifts
from ledger.money import format_amount
from ledger.tiers import Tier

EXEMPT = "exempt"


@dataclass(frozen=True)
class Standing:
    """A billing user's money position after this tick's postings; ``tier`` is the wallet's alone, as if the
    user were not exempt (an ``apply`` override enforces it on an exempt user)."""

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


def advance(previous: TierState | None, user: str, tier: str, now: datetime) -> Transition:
    """The user's tier state after this tick: ``since`` moves only when the tier changes."""
    if previous is not None and previous.tier == tier:
        return Transition(previous, previous)
    return Transition(previous, TierState(user, tier, now))


@dataclass(frozen=True)
class ProcessRef:
    """One process, unambiguous across PID reuse and reboots."""

    boot_id: str
    pid: int
    start_ticks: int


@dataclass(frozen=True)
class Desired:
    """What should hold for one uid on one node, and why (``override``: the admin override in force, if any)."""

    uid: int
    linux_user: str
    billing_user: str
    tier: str
    available: int
    cpu_quota_ppm: int | None
    gpu_blocked: bool
    kill_at: datetime | None
    kill: tuple[ProcessRef, ...]
    gpu_processes: tuple[ProcessRef, ...] = ()
    override: Override | None = None
    # The GPU minors of this node that the queue granted or offered to others: masked for this uid.
    gpu_masked: tuple[int, ...] = ()
    # GPU processes the queue stops: used without a grant past the grace while others wait (level 2).
    ungranted_kill: tuple[ProcessRef, ...] = ()

    @property
    def reason(self) -> str:
        cause = f", {self.override.describe()}" if self.override is not None else ""
        return f"tier {self.tier}, balance {format_amount(self.available)}{cause}"

    def kill_pending(self, now: datetime) -> bool:
        """GPU processes here will be killed once the grace is over, and it is not over yet."""
        return self.kill_at is not None and now < self.kill_at and bool(self.gpu_processes)


def percent_to_ppm(percent: Decimal | None) -> int | None:
    """A percentage of the node's CPUs as parts per million of them (exact: at most four decimals)."""
    return None if percent is None else int(percent * 10000)


def desired_state(
    uid: int,
    linux_user: str,
    state: TierState,
    standing: Standing,
    policy: TierPolicy,
    gpu_processes: tuple[ProcessRef, ...],
    now: datetime,
    override: Override | None = None,
    others_gpus: tuple[int, ...] = (),
    ungranted: tuple[ProcessRef, ...] = (),
) -> Desired:
    """The desired state of ``uid`` on one node, given its billing user's tier, admin override and GPU
    processes there, and the GPUs the queue holds for others there (``others_gpus``, minors). A lifted user
    is enforced as exempt; an exempt user keeps every GPU (a share in the queue, not a mask) and is never
    killed for ``ungranted`` use."""
    tier = EXEMPT if lifts(override, state.since, now) else state.tier
    quota = None
    if tier == Tier.LIMITED.value:
        quota = percent_to_ppm(policy.limited_cpu_percent)
    elif tier == Tier.BLOCKED.value:
        quota = percent_to_ppm(policy.blocked_cpu_percent)
    kill_at = None
    if tier == Tier.BLOCKED.value:
        kill_at = grace_start(override, state.since, now) + timedelta(seconds=policy.kill_grace_s)
    return Desired(
        uid=uid,
        linux_user=linux_user,
        billing_user=standing.user,
        tier=tier,
        available=standing.available,
        cpu_quota_ppm=quota,
        gpu_blocked=tier in (Tier.LIMITED.value, Tier.BLOCKED.value),
        kill_at=kill_at,
        kill=gpu_processes if kill_at is not None and now >= kill_at else (),
        gpu_processes=gpu_processes,
        override=applying(override, now),
        gpu_masked=() if tier == EXEMPT else tuple(sorted(set(others_gpus))),
        ungranted_kill=() if tier == EXEMPT else ungranted,
    )


_NOTICES = {
    "normal": "Your balance is {balance} {currency}; GPU use is unrestricted.",
    "exempt": "You are exempt from gpuledger limits.",
    "warning": "Your balance is low: {balance} {currency}. Please recharge soon.",
    "limited": "Balance {balance} {currency}: new GPU jobs are blocked and CPU is limited. Please recharge.",
    "blocked": "Balance {balance} {currency}: you are blocked; new GPU jobs are refused and CPU is limited."
               " Please recharge.",
}
_TIME = "%Y-%m-%d %H:%M:%S %Z"
# What ``notify`` accepts (docs/node-command.md).
NOTIFY_MAX_BYTES = 1000


def notice(desired: Desired, currency: str) -> str:
    """The one-line message a user sees for their current tier (at most 300 characters)."""
    if desired.override is not None and desired.override.action == "lift":
        until = desired.override.until
        text = ("An admin lifted your gpuledger limits"
                + (f" until {until.strftime(_TIME)}." if until is not None else " for now."))
    else:
        text = _NOTICES[desired.tier].format(balance=format_amount(desired.available), currency=currency)
    return text[:300]


def _time_left(seconds: float) -> str:
    minutes = int(seconds // 60)
    return "in less than a minute" if minutes < 1 else f"in {minutes} min"


def terminal_message(
    desired: Desired, currency: str, now: datetime, *, tier_changed: bool, warn_kill: bool, killed: Sequence[int]
) -> str | None:
    """The line written to the user's terminals on a node this tick, or None when there is nothing to say:
    the new tier, a pending kill with the time left (once), the processes just killed."""
    parts = [notice(desired, currency)] if tier_changed else []
    if warn_kill and desired.kill_at is not None:
        left = _time_left((desired.kill_at - now).total_seconds())
        parts.append(f"Your GPU processes on this node will be stopped at {desired.kill_at.strftime(_TIME)}"
                     f" ({left}): save your work.")
    if killed:
        parts.append(f"Your GPU processes on this node were stopped (PID {', '.join(map(str, killed))}):"
                     f" balance {format_amount(desired.available)} {currency}, tier {desired.tier}.")
    if not parts:
        return None
    return " ".join(parts).encode()[:NOTIFY_MAX_BYTES].decode("utf-8", "ignore")


def _decimal(value: Decimal) -> str:
    return format(value, "f")


def ppm_to_percent(ppm: int) -> str:
    """Parts per million of the node's CPUs as a percentage string (exact: ppm has no fraction)."""
    return _decimal(Decimal(ppm) / 10**4)


def time_to_empty_hours(available: int, blocked_threshold: int, burn_per_hour: int) -> str | None:
    """Hours until ``available`` reaches the blocked threshold at ``burn_per_hour`` (micro-units per hour).

    Rounded down to 0.1 h (it never promises more time than there is); ``None`` when not burning.
    """
    if burn_per_hour <= 0:
        return None
    hours = Decimal(max(0, available - blocked_threshold)) / Decimal(burn_per_hour)
    return _decimal(hours.quantize(Decimal("0.1"), rounding="ROUND_DOWN"))


def status_document(
    desired: Desired,
    *,
    currency: str,
    burn_per_hour: int,
    blocked_threshold: int,
    now: datetime,
    recharge_hint: str,
) -> dict[str, object]:
    """The ``status-write`` document for one uid on one node (docs/status-file.md, version 1)."""
    return {
        "version": 1,
        "user": desired.linux_user,
        "uid": desired.uid,
        "billing_user": desired.billing_user,
        "updated_at": int(now.timestamp()),
        "tier": desired.tier,
        "balance": format_amount(desired.available),
        "currency": currency,
        "burn_rate_per_hour": format_amount(burn_per_hour),
        "time_to_empty_hours": time_to_empty_hours(desired.available, blocked_threshold, burn_per_hour),
        "gpu_blocked": desired.gpu_blocked,
        "cpu_quota_percent": None if desired.cpu_quota_ppm is None else ppm_to_percent(desired.cpu_quota_ppm),
        "kill_at": None if desired.kill_at is None else int(desired.kill_at.timestamp()),
        "notice": notice(desired, currency),
        "recharge_hint": recharge_hint[:300],
    }
