"""The controller's planner as a fixture table: (desired, actual, cpus) -> the verbs, or a declared no-op.

The facts are the node command's own read-verb documents (as ``quota-get``/``gpu-state`` print them), parsed
by the same parsers the tick uses, so the table covers what a node really says, strays included.
"""

from __future__ import annotations

import json

import pytest

from collector.enforcing.decisions import Desired
from collector.enforcing.planner import Actual, FactError, parse_gpu_state, parse_outside, parse_quota, plan

UID = 1234
CPUS = 64


def _desired(quota: int | None, blocked: bool) -> Desired:
    return Desired(UID, "alice", "alice", "blocked" if blocked else "limited", 0, quota, blocked, None, ())


def _actual(quota: dict[str, object], gpu: dict[str, object]) -> Actual:
    """An ``Actual`` from the two documents, exactly as ``Converger._read_actual`` builds it."""
    q = json.dumps({"ok": True, "verb": "quota-get", "uid": UID, "backend": "cgroup-v1", **quota}).encode()
    g = json.dumps({"ok": True, "verb": "gpu-state", "uid": UID, "backend": "cgroup-v1", "majors": [195],
                    **gpu}).encode()
    return Actual(UID, parse_quota(q), parse_gpu_state(g), parse_outside("quota-get", q), parse_outside("gpu-state", g))


NONE = {"quota_ppm": None, "raw": "", "outside": 0}
QUOTA = {"quota_ppm": 100000, "raw": "640000 100000", "outside": 0}
QUOTA_STRAYS = {"quota_ppm": 100000, "raw": "640000 100000", "outside": 3}
FREE = {"blocked": False, "outside": 0}
BLOCKED = {"blocked": True, "outside": 0}
BLOCKED_STRAYS = {"blocked": True, "outside": 2}  # v1: the group exists, but a new session is not in it

TABLE = [
    # (case, desired quota, desired block, quota facts, gpu facts, verbs)
    ("nothing wanted, nothing there", None, False, NONE, FREE, []),
    ("quota and block wanted, none there", 100000, True, NONE, FREE,
     [("quota-set", "1234", "100000"), ("gpu-block", "1234")]),
    ("both in place, no strays: no-op", 100000, True, QUOTA, BLOCKED, []),
    ("group exists, stray processes: re-apply both", 100000, True, QUOTA_STRAYS, BLOCKED_STRAYS,
     [("quota-set", "1234", "100000"), ("gpu-block", "1234")]),
    ("block in place with strays, quota clean", 100000, True, QUOTA, BLOCKED_STRAYS, [("gpu-block", "1234")]),
    ("quota in place with strays, block clean", 100000, True, QUOTA_STRAYS, BLOCKED,
     [("quota-set", "1234", "100000")]),
    ("lifting: strays do not matter", None, False, QUOTA_STRAYS, BLOCKED_STRAYS,
     [("quota-clear", "1234"), ("gpu-unblock", "1234")]),
    ("rounded read-back is not re-set", 12347, False, {"quota_ppm": 12346, "raw": "79020 100000", "outside": 0},
     FREE, []),
    ("an older node command without the field: no strays known", 100000, True,
     {"quota_ppm": 100000, "raw": "640000 100000"}, {"blocked": True}, []),
]


@pytest.mark.parametrize(("quota", "blocked", "quota_facts", "gpu_facts", "verbs"),
                         [row[1:] for row in TABLE], ids=[row[0] for row in TABLE])
def test_planner_table(quota: int | None, blocked: bool, quota_facts: dict[str, object],
                       gpu_facts: dict[str, object], verbs: list[tuple[str, ...]]) -> None:
    actions = plan("node-1", _desired(quota, blocked), _actual(quota_facts, gpu_facts), CPUS)
    assert [action.verb for action in actions] == verbs


def _read_back(ppm: int) -> dict[str, object]:
    return {"quota_ppm": ppm, "raw": "", "outside": 0}


# The node rounds a quota down by less than one percent of one CPU (10000 / cpus ppm, rounded up) and never
# up; a sample without a CPU count reads as one CPU (collector.charging.samples), the widest tolerance.
CPU_TABLE = [
    # (case, the node's CPUs, desired quota, read-back quota, verbs)
    ("64 CPUs, read back 156 ppm low (within the step of 157): no-op", 64, 100000, 99844, []),
    ("64 CPUs, read back a whole step low: re-set", 64, 100000, 99843, [("quota-set", "1234", "100000")]),
    ("64 CPUs, read back exact: no-op", 64, 100000, 100000, []),
    ("read back above the request: re-set", 64, 100000, 100001, [("quota-set", "1234", "100000")]),
    ("unknown CPUs (one): read back 9999 ppm low: no-op", 1, 100000, 90001, []),
    ("unknown CPUs (one): read back a whole percent low: re-set", 1, 100000, 90000, [("quota-set", "1234", "100000")]),
    ("zero CPUs counts as one: no-op", 0, 100000, 90001, []),
    ("3 CPUs, the step rounds up (3334): no-op", 3, 100000, 96667, []),
    ("3 CPUs, one past the step: re-set", 3, 100000, 96666, [("quota-set", "1234", "100000")]),
    ("a read-back of zero is a quota, not none: re-set", 64, 100000, 0, [("quota-set", "1234", "100000")]),
]


@pytest.mark.parametrize(("cpus", "quota", "read_back", "verbs"), [row[1:] for row in CPU_TABLE],
                         ids=[row[0] for row in CPU_TABLE])
def test_planner_cpu_table(cpus: int, quota: int, read_back: int, verbs: list[tuple[str, ...]]) -> None:
    actions = plan("node-1", _desired(quota, False), _actual(_read_back(read_back), FREE), cpus)
    assert [action.verb for action in actions] == verbs


def test_a_re_apply_for_strays_says_why() -> None:
    actions = plan("node-1", _desired(100000, True), _actual(QUOTA_STRAYS, BLOCKED_STRAYS), CPUS)
    assert [action.reason.rpartition(", ")[2] for action in actions] == [
        "3 process(es) outside the quota", "2 process(es) outside the GPU block"]


def test_a_re_apply_against_what_it_produced_is_a_no_op() -> None:
    """After the re-apply the node reports no strays: the next tick plans nothing."""
    first = plan("node-1", _desired(100000, True), _actual(QUOTA_STRAYS, BLOCKED_STRAYS), CPUS)
    assert first
    assert plan("node-1", _desired(100000, True), _actual(QUOTA, BLOCKED), CPUS) == ()


@pytest.mark.parametrize("value", [-1, "2", True, 1.5])
def test_a_malformed_outside_count_is_a_fact_error(value: object) -> None:
    with pytest.raises(FactError):
        parse_outside("gpu-state", json.dumps({"ok": True, "blocked": True, "outside": value}).encode())
