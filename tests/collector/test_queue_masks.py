"""The queue's per-GPU masks in the converger's plan (docs/queue.md, "Enforcement"): everyone but the holder
is denied a granted GPU's minor with ``gpu-block UID --minors``, the tier's whole block wins, exempt users keep
every GPU, and the masks follow the grants. The facts are ``gpu-state`` documents as the node prints them."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from collector.config import TierPolicy
from collector.enforcing.decisions import ProcessRef, Standing, TierState, desired_state
from collector.enforcing.planner import Actual, FactError, parse_denied_minors, parse_gpu_state, plan
from ledger.tiers import Tier

NOW = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
UID = 1001
NO_QUOTAS = TierPolicy(limited_cpu_percent=None, blocked_cpu_percent=None)  # only the GPU verbs in the table


def gpu_state(**fields: object) -> bytes:
    return json.dumps({"ok": True, "verb": "gpu-state", "uid": UID, "backend": "cgroup-v1", "majors": [195],
                       "outside": 0, **fields}).encode()


def actual(**fields: object) -> Actual:
    g = gpu_state(**fields)
    blocked = parse_gpu_state(g)
    return Actual(UID, None, blocked, 0, json.loads(g)["outside"], parse_denied_minors(g) if blocked else None)


FREE = {"blocked": False, "denied_minors": []}
MASK_0 = {"blocked": True, "denied_minors": [0]}
MASK_01 = {"blocked": True, "denied_minors": [1, 0]}
WHOLE = {"blocked": True, "denied_minors": "all"}

TABLE = [
    # (case, tier, exempt, others' GPUs, facts, verbs)
    ("another user's grant: masked", Tier.NORMAL, False, (0,), FREE, [("gpu-block", "1001", "--minors", "0")]),
    ("the mask in place: no-op", Tier.NORMAL, False, (0,), MASK_0, []),
    ("a second grant: the mask grows", Tier.NORMAL, False, (1, 0), MASK_0,
     [("gpu-block", "1001", "--minors", "0,1")]),
    ("the node's order of minors does not matter", Tier.NORMAL, False, (0, 1), MASK_01, []),
    ("strays outside the mask: sent again", Tier.NORMAL, False, (0,), {**MASK_0, "outside": 2},
     [("gpu-block", "1001", "--minors", "0")]),
    ("released: the mask lifts", Tier.NORMAL, False, (), MASK_0, [("gpu-unblock", "1001")]),
    ("limited with a grant of others: the whole block wins", Tier.LIMITED, False, (0,), MASK_0,
     [("gpu-block", "1001")]),
    ("recharged while others hold GPU 0: from the whole block to the mask", Tier.NORMAL, False, (0,), WHOLE,
     [("gpu-block", "1001", "--minors", "0")]),
    ("exempt users keep every GPU", Tier.NORMAL, True, (0, 1), FREE, []),
    ("an exempt user masked earlier is unmasked", Tier.NORMAL, True, (0,), MASK_0, [("gpu-unblock", "1001")]),
]


@pytest.mark.parametrize(("tier", "exempt", "others", "facts", "verbs"), [row[1:] for row in TABLE],
                         ids=[row[0] for row in TABLE])
def test_mask_table(tier: Tier, exempt: bool, others: tuple[int, ...], facts: dict[str, object],
                    verbs: list[tuple[str, ...]]) -> None:
    state = TierState("alice", "exempt" if exempt else tier.value, NOW)
    desired = desired_state(UID, "alice", state, Standing("alice", tier, 0, exempt), NO_QUOTAS, (), NOW, None,
                            others)
    assert [a.verb for a in plan("n1", desired, actual(**facts), 8)] == verbs


@pytest.mark.parametrize("value", [[-1], [254], [True], "some", {"0": 1}])
def test_a_bad_denied_minors_is_a_fact_error(value: object) -> None:
    with pytest.raises(FactError):
        parse_denied_minors(gpu_state(blocked=True, denied_minors=value))


def test_a_node_command_without_minors_reports_the_whole_block() -> None:
    assert parse_denied_minors(gpu_state(blocked=True)) is None


def test_an_ungranted_process_is_killed_by_identity_and_not_for_an_exempt_user() -> None:
    job = ProcessRef("boot-1", 4242, 99)
    state = TierState("alice", "normal", NOW)
    desired = desired_state(UID, "alice", state, Standing("alice", Tier.NORMAL, 0), NO_QUOTAS, (job,), NOW, None,
                            (), (job,))
    [action] = plan("n1", desired, actual(**FREE), 8)
    assert action.verb == ("kill", "boot-1", "4242", "99", "1001") and "without a grant" in action.reason
    exempt = desired_state(UID, "alice", TierState("alice", "exempt", NOW), Standing("alice", Tier.NORMAL, 0, True),
                           NO_QUOTAS, (job,), NOW, None, (), (job,))
    assert plan("n1", exempt, actual(**FREE), 8) == ()
