"""Which (node, uid) pairs the decision log says the controller holds restricted: what a restarted controller
reads first, so that it still lifts what an earlier process restricted."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine

from collector.enforcing.decisionlog import DecisionLog, restricts
from collector.enforcing.decisions import Desired
from collector.enforcing.planner import LIFTING, RESTRICTING, Action
from tests.collector.conftest import Database


@pytest.fixture
def log(database: Database) -> Iterator[DecisionLog]:
    engine = create_engine(database.app_url)
    yield DecisionLog(engine)
    engine.dispose()


HISTORY = [  # (node, uid, verb, outcome), oldest first
    ("n1", 1001, "quota-set 1001 100000", "applied"),
    ("n1", 1001, "quota-clear 1001", "applied"),    # the quota is lifted ...
    ("n1", 1001, "gpu-block 1001", "unchanged"),    # ... the GPU block still holds: restricted
    ("n1", 1002, "gpu-block 1002", "applied"),
    ("n1", 1002, "gpu-unblock 1002", "applied"),    # lifted
    ("n2", 1002, "quota-set 1002 100000", "applied"),  # the same uid on another node is a pair of its own
    ("n1", 1003, "gpu-block 1003", "failed"),       # restricted nothing
    ("n1", 1004, "kill boot 7 99 1004", "applied"),  # neither restricts nor lifts
    ("n1", 1004, "notify 1004", "applied"),
    ("n1", 1005, "quota-set 1005 100000", "applied"),
    ("n1", 1005, "quota-clear 1005", "refused"),    # a lift that did not happen lifts nothing
]


def test_the_latest_applied_quota_and_gpu_verbs_decide(log: DecisionLog) -> None:
    for node, uid, verb, outcome in HISTORY:
        desired = Desired(uid, f"user{uid}", "alice", "blocked", 0, 100000, True, None, ())
        decision = log.open(None, Action(node, uid, tuple(verb.split()), "test"), desired, dry_run=False)
        log.close(decision, outcome, 0, {})
    assert log.restricted() == {("n1", 1001): "user1001", ("n2", 1002): "user1002", ("n1", 1005): "user1005"}


def test_restricting_verbs_have_one_list() -> None:
    assert RESTRICTING | LIFTING == {"quota-set", "quota-clear", "gpu-block", "gpu-unblock"}
    verbs = ["gpu-block", "gpu-unblock", "kill", "notify", "quota-clear", "quota-set"]
    assert [restricts(Action("n1", 1, (verb, "1"), "r")) for verb in verbs] == [True, False, False, False, False, True]
