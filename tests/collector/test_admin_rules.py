"""Admin settings and overrides as pure rules: what a settings version and an override mean for one user,
and the notices a pending and a finished kill give."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from collector.config import TierPolicy
from collector.enforcing.decisions import ProcessRef, Standing, TierState, desired_state, terminal_message
from collector.enforcing.rules import Rules, lay_over
from control.overrides import Override, grace_start, lifts, override_tier
from control.queue.records import Policy
from control.settings import SettingsError, parse
from ledger.money import MICRO
from ledger.tiers import Thresholds, Tier

NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
ENV = Rules(Thresholds(), TierPolicy(kill_grace_s=600), dry_run=False)
JOB = ProcessRef("boot", 4242, 99)


def override(action: str, *, until: datetime | None = None, at: datetime = NOW - timedelta(minutes=5)) -> Override:
    return Override(7, "alice", action, "deadline", until, at)


def apply_settings(defaults: Rules, version: int, document: dict[str, object]) -> Rules:
    """What the controller does with a stored version (collector.enforcing.admin.AdminReader)."""
    return lay_over(defaults, version, parse(document, defaults.thresholds, version))


def test_a_settings_version_overrides_only_the_keys_it_holds() -> None:
    rules = apply_settings(ENV, 3, {"tier_warning": "200.000000", "kill_grace_seconds": 60, "dry_run": True})
    assert rules == Rules(Thresholds(warning=200 * MICRO, limited=10 * MICRO, blocked=0),
                          TierPolicy(kill_grace_s=60), dry_run=True, settings_version=3)
    assert rules.policy.limited_cpu_percent == Decimal(50)
    assert apply_settings(ENV, 4, {}) == Rules(ENV.thresholds, ENV.policy, False, 4)


@pytest.mark.parametrize(("document", "key"), [
    ({"tier_limited": "300.000000"}, "tier_*"),            # above the environment's warning threshold
    ({"tier_warning": "1.0000001"}, "tier_warning"),
    ({"tier_blocked": 5}, "tier_blocked"),
    ({"kill_grace_seconds": -1}, "kill_grace_seconds"),
    ({"kill_grace_seconds": True}, "kill_grace_seconds"),
    ({"kill_grace_seconds": 60.0}, "kill_grace_seconds"),     # what json gives for 60.0 and 6e1
    ({"kill_grace_seconds": 30 * 86400 + 1}, "kill_grace_seconds"),
    ({"dry_run": "yes"}, "dry_run"),
    ({"queue_offer_seconds": 30}, "queue_offer_seconds"),
    ({"queue_max_gpus_per_user": 65}, "queue_max_gpus_per_user"),      # no request holds more than 64
    ({"queue_max_gpus_per_project": 2.0}, "queue_max_gpus_per_project"),
    ({"queue_max_queued_per_user": 0}, "queue_max_queued_per_user"),
    ({"queue_admin_boost_cap_hours": "24"}, "queue_admin_boost_cap_hours"),
    ({"queue_default_hours": "0"}, "queue_default_hours"),
    ({"queue_default_hours": 2.5}, "queue_default_hours"),              # a float: give "2.5"
    ({"queue_max_hours": "169"}, "queue_max_hours"),                    # the queue's table stops at 168
    ({"queue_max_hours": "1.005"}, "queue_max_hours"),
    ({"queue_max_hours": "2"}, "queue_*_hours"),                        # below the default 4
    ({"queue_default_hours": "8", "queue_max_hours": "6"}, "queue_*_hours"),
    ({"queue_shares": ["vision"]}, "queue_shares"),
    ({"queue_shares": {"Vision": "1"}}, "queue_shares"),
    ({"queue_shares": {"vision": 2}}, "queue_shares"),                  # a weight is decimal text
    ({"queue_shares": {"vision": "0"}}, "queue_shares"),
])
def test_a_bad_settings_version_is_refused_naming_the_key(document: dict[str, object], key: str) -> None:
    with pytest.raises(SettingsError) as caught:
        apply_settings(ENV, 9, document)
    assert (caught.value.version, caught.value.key) == (9, key)
    assert str(caught.value).startswith(f"settings version 9: {key}: ")


def test_the_queue_keys_make_the_ticks_policy_and_what_they_leave_out_is_the_default() -> None:
    rules = apply_settings(ENV, 5, {"queue_offer_seconds": 300, "queue_max_gpus_per_user": 2,
                                    "queue_max_gpus_per_project": 3, "queue_max_queued_per_user": 1,
                                    "queue_admin_boost_cap_hours": 12, "queue_default_hours": "1.5",
                                    "queue_max_hours": 48, "queue_shares": {"vision": "3", "nlp": "0.5"}})
    assert rules.queue == Policy(offer_s=300, default_hours=Decimal("1.50"), max_hours=Decimal(48),
                                 admin_boost_cap_hours=12, max_gpus_per_user=2, max_gpus_per_project=3,
                                 max_queued_per_user=1,
                                 shares={"project:nlp": Decimal("0.5"), "project:vision": Decimal(3)})
    assert rules.thresholds == ENV.thresholds            # the queue keys touch nothing else
    assert apply_settings(ENV, 6, {"dry_run": True}).queue == Policy()
    # What is stored is the canonical form, and it parses to the same policy.
    document = parse({"queue_max_hours": 48, "queue_shares": {"vision": "3.0"}}, ENV.thresholds).document()
    assert document == {"queue_max_hours": "48.00", "queue_shares": {"vision": "3.0"}}
    assert apply_settings(ENV, 7, document).queue.max_hours == Decimal(48)


def test_a_settings_document_must_be_an_object() -> None:
    with pytest.raises(SettingsError) as caught:
        apply_settings(ENV, 2, ["dry_run"])  # type: ignore[arg-type]
    assert caught.value.key == "settings"


def test_override_tiers() -> None:
    assert override_tier("blocked", "blocked", override("exempt"), NOW) == "exempt"
    assert override_tier("exempt", "limited", override("apply"), NOW) == "limited"
    assert override_tier("blocked", "blocked", override("lift"), NOW) == "blocked"  # a lift keeps the tier
    expired = override("exempt", until=NOW - timedelta(seconds=1))
    assert override_tier("blocked", "blocked", expired, NOW) == "blocked"
    assert override_tier("exempt", "blocked", None, NOW) == "exempt"


def test_a_lift_without_until_ends_at_the_next_tier_change() -> None:
    lift = override("lift")
    assert lifts(lift, NOW - timedelta(hours=1), NOW)          # the tier it was made in
    assert not lifts(lift, NOW - timedelta(minutes=1), NOW)    # the tier changed after it was made
    timed = override("lift", until=NOW + timedelta(hours=1))
    assert lifts(timed, NOW - timedelta(minutes=1), NOW)       # with until, tier changes do not end it
    assert not lifts(timed, NOW - timedelta(minutes=1), NOW + timedelta(hours=2))


def test_a_kill_grace_runs_again_after_a_lift_ends() -> None:
    since = NOW - timedelta(hours=3)
    ended = override("lift", until=NOW - timedelta(minutes=1))
    assert grace_start(ended, since, NOW) == NOW - timedelta(minutes=1)
    assert grace_start(None, since, NOW) == since
    state, standing = TierState("alice", "blocked", since), Standing("alice", Tier.BLOCKED, -MICRO)
    desired = desired_state(1001, "alice", state, standing, TierPolicy(kill_grace_s=600), (JOB,), NOW, ended)
    assert desired.kill_at == NOW + timedelta(minutes=9) and desired.kill == ()
    assert desired.override is None  # an expired override is no decision's cause


def test_a_lifted_user_is_enforced_as_exempt() -> None:
    state, standing = TierState("alice", "blocked", NOW - timedelta(hours=1)), Standing("alice", Tier.BLOCKED, -MICRO)
    desired = desired_state(1001, "alice", state, standing, TierPolicy(kill_grace_s=0), (JOB,), NOW, override("lift"))
    assert (desired.tier, desired.gpu_blocked, desired.cpu_quota_ppm, desired.kill) == ("exempt", False, None, ())
    assert desired.reason == "tier exempt, balance -1.000000, override #7 lift: deadline"


def test_terminal_messages() -> None:
    state = TierState("alice", "blocked", NOW - timedelta(minutes=1))
    desired = desired_state(1001, "alice", state, Standing("alice", Tier.BLOCKED, -MICRO), TierPolicy(kill_grace_s=600),
                            (JOB,), NOW)
    assert desired.kill_pending(NOW)
    warned = terminal_message(desired, "CNY", NOW, tier_changed=True, warn_kill=True, killed=())
    assert warned is not None and "you are blocked" in warned
    assert "stopped at 2026-11-27 10:09:00 UTC (in 9 min)" in warned
    assert terminal_message(desired, "CNY", NOW, tier_changed=False, warn_kill=False, killed=()) is None
    done = terminal_message(desired, "CNY", NOW, tier_changed=False, warn_kill=False, killed=(4242, 4243))
    assert done == ("Your GPU processes on this node were stopped (PID 4242, 4243): balance -1.000000 CNY,"
                    " tier blocked.")


def test_settings_never_make_a_dry_controller_live() -> None:
    dry = Rules(Thresholds(), TierPolicy(kill_grace_s=600), dry_run=True)
    assert apply_settings(dry, 5, {"dry_run": False}).dry_run is True
    assert apply_settings(ENV, 6, {"dry_run": False}).dry_run is False
