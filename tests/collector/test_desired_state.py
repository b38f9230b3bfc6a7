"""From a billing user's standing to the state wanted on a node, as a fixture table: (money tier, ledger
exemption, admin override, time in the tier, GPU processes, policy) -> the ``Desired``, or a declared
"nothing to enforce".

Each row goes through the same rules a tick does: ``override_tier`` gives the tier the controller tracks
(``collector.enforcing.decide``), the user entered it ``since`` seconds ago, and ``desired_state`` turns it
into what should hold for one uid on one node.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from collector.config import TierPolicy
from collector.enforcing.decisions import Desired, ProcessRef, Standing, TierState, desired_state
from collector.enforcing.planner import Actual, plan
from control.overrides import Override, override_tier
from ledger.money import MICRO
from ledger.tiers import Tier

NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
UID = 1001
JOB = ProcessRef("boot", 4242, 99)
POLICY = TierPolicy()  # limited 50 % of the CPUs, blocked 10 %, kill grace 600 s
BALANCE = {Tier.NORMAL: 500 * MICRO, Tier.WARNING: 50 * MICRO, Tier.LIMITED: 5 * MICRO, Tier.BLOCKED: -MICRO}


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


MADE = ago(300)  # when the rows' overrides were made, unless they say


def override(action: str, *, until: datetime | None = None, at: datetime = MADE) -> Override:
    return Override(7, "alice", action, "deadline", until, at)


@dataclass(frozen=True)
class Want:
    """The parts of a ``Desired`` a row pins; ``kill_in_s`` is the kill time relative to NOW."""

    tier: str
    cpu_quota_ppm: int | None = None
    gpu_blocked: bool = False
    kill_in_s: float | None = None
    kills: bool = False
    override: bool = False  # whether the decision records the override as its cause


def nothing(tier: str, *, override: bool = False) -> Want:
    """The declared no-op: no CPU quota, GPUs free, nothing to kill."""
    return Want(tier, override=override)


LIMITED = Want("limited", 500000, True)


def blocked(kill_in_s: float, *, kills: bool = False, override: bool = False) -> Want:
    return Want("blocked", 100000, True, kill_in_s, kills, override)


TABLE: list[tuple[str, Tier, bool, Override | None, float, tuple[ProcessRef, ...], TierPolicy, Want]] = [
    # (case, money tier, ledger-exempt, override, seconds in the tier, GPU processes, policy, wanted)
    ("normal: nothing to enforce", Tier.NORMAL, False, None, 3600, (JOB,), POLICY, nothing("normal")),
    ("warning: nothing to enforce yet", Tier.WARNING, False, None, 3600, (JOB,), POLICY, nothing("warning")),
    ("limited: half the CPUs, new GPU use blocked, nothing killed", Tier.LIMITED, False, None, 3600, (JOB,),
     POLICY, LIMITED),
    ("blocked, grace running: nothing killed yet", Tier.BLOCKED, False, None, 60, (JOB,), POLICY, blocked(540)),
    ("blocked, one second before the grace ends: nothing killed", Tier.BLOCKED, False, None, 599, (JOB,), POLICY,
     blocked(1)),
    ("blocked, exactly at the grace's end: killed", Tier.BLOCKED, False, None, 600, (JOB,), POLICY,
     blocked(0, kills=True)),
    ("blocked, after the grace: killed", Tier.BLOCKED, False, None, 601, (JOB,), POLICY, blocked(-1, kills=True)),
    ("blocked without GPU processes: a kill time, nothing to kill", Tier.BLOCKED, False, None, 3600, (), POLICY,
     blocked(-3000)),
    ("blocked, grace 0: killed at once", Tier.BLOCKED, False, None, 0, (JOB,), TierPolicy(kill_grace_s=0),
     blocked(0, kills=True)),
    ("limited, policy without CPU quotas: GPUs blocked only", Tier.LIMITED, False, None, 60, (JOB,),
     TierPolicy(limited_cpu_percent=None), Want("limited", None, True)),
    ("blocked, fractional CPU percent: exact ppm", Tier.BLOCKED, False, None, 60, (JOB,),
     TierPolicy(blocked_cpu_percent=Decimal("12.3456")), Want("blocked", 123456, True, 540)),
    ("ledger-exempt with an empty wallet: nothing enforced", Tier.BLOCKED, True, None, 3600, (JOB,), POLICY,
     nothing("exempt")),
    ("apply on a ledger-exempt user: the money tier is enforced", Tier.BLOCKED, True, override("apply"), 60,
     (JOB,), POLICY, blocked(540, override=True)),
    ("apply on a user who is not exempt: the same tier", Tier.LIMITED, False, override("apply"), 60, (JOB,),
     POLICY, Want("limited", 500000, True, override=True)),
    ("exempt override on a blocked user: nothing enforced", Tier.BLOCKED, False, override("exempt"), 3600, (JOB,),
     POLICY, nothing("exempt", override=True)),
    ("exempt override that expired: the money tier is back", Tier.BLOCKED, False,
     override("exempt", until=ago(1)), 3600, (JOB,), POLICY, blocked(-3000, kills=True)),
    ("lift with until, in force: enforced as exempt", Tier.BLOCKED, False, override("lift", until=NOW + timedelta(
        hours=1)), 3600, (JOB,), POLICY, nothing("exempt", override=True)),
    ("lift with until, in force though the tier changed after it", Tier.BLOCKED, False,
     override("lift", until=NOW + timedelta(hours=1)), 60, (JOB,), POLICY, nothing("exempt", override=True)),
    ("lift without until, made in the current tier: enforced as exempt", Tier.BLOCKED, False, override("lift"),
     3600, (JOB,), POLICY, nothing("exempt", override=True)),
    # The lift still applies (it has no end), so the decision names it, but it no longer lifts anything.
    ("lift without until, the tier changed since: the tier is enforced", Tier.BLOCKED, False, override("lift"),
     60, (JOB,), POLICY, blocked(540, override=True)),
    ("lift that ended: the grace starts again at its end", Tier.BLOCKED, False, override("lift", until=ago(120)),
     3600, (JOB,), POLICY, blocked(480)),
    ("lift that ended before the tier was entered: the grace runs from the tier", Tier.BLOCKED, False,
     override("lift", until=ago(7200), at=ago(9000)), 60, (JOB,), POLICY, blocked(540)),
    ("lift on a normal user: exempt, nothing to enforce either way", Tier.NORMAL, False, override("lift"), 3600,
     (JOB,), POLICY, nothing("exempt", override=True)),
]


def decide_one(money: Tier, exempt: bool, admin: Override | None, since_s: float,
               processes: tuple[ProcessRef, ...], policy: TierPolicy) -> Desired:
    standing = Standing("alice", money, BALANCE[money], exempt)
    tier = override_tier(standing.tier_name, standing.tier.value, admin, NOW)
    return desired_state(UID, "alice", TierState("alice", tier, ago(since_s)), standing, policy, processes, NOW, admin)


@pytest.mark.parametrize(("money", "exempt", "admin", "since_s", "processes", "policy", "want"),
                         [row[1:] for row in TABLE], ids=[row[0] for row in TABLE])
def test_desired_state_table(money: Tier, exempt: bool, admin: Override | None, since_s: float,
                             processes: tuple[ProcessRef, ...], policy: TierPolicy, want: Want) -> None:
    desired = decide_one(money, exempt, admin, since_s, processes, policy)
    kill_at = None if want.kill_in_s is None else NOW + timedelta(seconds=want.kill_in_s)
    assert (desired.tier, desired.cpu_quota_ppm, desired.gpu_blocked, desired.kill_at) == (
        want.tier, want.cpu_quota_ppm, want.gpu_blocked, kill_at)
    assert desired.kill == (processes if want.kills else ())
    assert desired.override == (admin if want.override else None)
    # What every row shares: who it is for and what the node's processes are, whatever is enforced.
    assert (desired.uid, desired.linux_user, desired.billing_user, desired.available, desired.gpu_processes) == (
        UID, "alice", "alice", BALANCE[money], processes)


FREE, RESTRICTED_BLOCKED = Actual(UID, None, False), Actual(UID, 100000, True)
KILL = ("kill", "boot", "4242", "99", "1001")

CHAIN = [
    # (case, money tier, ledger-exempt, override, seconds in the tier, what the node has, verbs)
    ("normal on a free node: no-op", Tier.NORMAL, False, None, 3600, FREE, []),
    ("limited on a free node: quota and block", Tier.LIMITED, False, None, 60, FREE,
     [("quota-set", "1001", "500000"), ("gpu-block", "1001")]),
    ("blocked in the grace, already restricted as blocked: no-op", Tier.BLOCKED, False, None, 60,
     RESTRICTED_BLOCKED, []),
    ("blocked past the grace, already restricted: only the kill", Tier.BLOCKED, False, None, 600,
     RESTRICTED_BLOCKED, [KILL]),
    ("blocked to limited: the quota rises, the block stays", Tier.LIMITED, False, None, 60, RESTRICTED_BLOCKED,
     [("quota-set", "1001", "500000")]),
    ("recharged to normal while restricted: everything lifted", Tier.NORMAL, False, None, 60, RESTRICTED_BLOCKED,
     [("quota-clear", "1001"), ("gpu-unblock", "1001")]),
    ("lifted while restricted: everything lifted, nothing killed", Tier.BLOCKED, False, override("lift"), 3600,
     RESTRICTED_BLOCKED, [("quota-clear", "1001"), ("gpu-unblock", "1001")]),
    ("exempt override on a free node: no-op", Tier.BLOCKED, False, override("exempt"), 3600, FREE, []),
]


@pytest.mark.parametrize(("money", "exempt", "admin", "since_s", "actual", "verbs"),
                         [row[1:] for row in CHAIN], ids=[row[0] for row in CHAIN])
def test_from_standing_to_verbs(money: Tier, exempt: bool, admin: Override | None, since_s: float, actual: Actual,
                                verbs: list[tuple[str, ...]]) -> None:
    """The two tables joined: what a tier means on a node that holds ``actual`` (64 CPUs)."""
    desired = decide_one(money, exempt, admin, since_s, (JOB,), POLICY)
    assert [action.verb for action in plan("node-1", desired, actual, 64)] == verbs


def test_the_table_covers_every_tier_and_override() -> None:
    """A new tier or override action must get rows of its own."""
    assert {row[1] for row in TABLE} == set(Tier)
    assert {row[3].action for row in TABLE if row[3] is not None} == {"apply", "exempt", "lift"}


@pytest.mark.parametrize(("since_s", "pending"), [(599, True), (600, False), (601, False)],
                         ids=["a second before the kill", "at the kill", "after the kill"])
def test_a_kill_is_pending_only_before_its_time(since_s: float, pending: bool) -> None:
    """What the terminal warning keys on: pending until the kill time, then the kill itself."""
    desired = decide_one(Tier.BLOCKED, False, None, since_s, (JOB,), POLICY)
    assert desired.kill_pending(NOW) is pending
    assert bool(desired.kill) is not pending


def test_the_reason_names_the_override_that_applies() -> None:
    assert decide_one(Tier.BLOCKED, True, override("apply"), 60, (), POLICY).reason == (
        "tier blocked, balance -1.000000, override #7 apply: deadline")
    assert decide_one(Tier.BLOCKED, False, override("exempt", until=ago(1)), 60, (), POLICY).reason == (
        "tier blocked, balance -1.000000")
