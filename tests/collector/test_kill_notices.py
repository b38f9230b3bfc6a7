"""A pending kill is announced once on each node with the time left, and the kill itself is announced:
real node command, real processes, real PostgreSQL. The decision log keeps each notice's text."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from collector.config import TierPolicy
from ledger.money import MICRO
from tests.collector.conftest import Database
from tests.collector.harness import Cluster, linux_user_fixture, make_nodes, remove_tree, spawn_as
from tests.harness.sshd import sshd_available

pytestmark = [pytest.mark.root, pytest.mark.skipif(not sshd_available(), reason="needs root")]
USER = "glc-frank"
GIB = 1 << 30
GRACE_S = 6


frank = linux_user_fixture(USER)


@pytest.fixture
def cluster(database: Database, frank: int) -> Iterator[Cluster]:
    nodes, base = make_nodes(["k1"])
    cluster = Cluster(database, nodes, policy=TierPolicy(kill_grace_s=GRACE_S))
    cluster.setup_ledger({USER: 0})
    cluster.ledger.adjust(USER, -20 * MICRO, idem_key="drain", actor="test", reason="test: blocked")
    yield cluster
    cluster.close()
    remove_tree(base)


def notices(cluster: Cluster, since: int = 0) -> list[str]:
    return [row.reason for row in cluster.rows(
        "SELECT reason FROM collector.decision WHERE id > :s AND verb LIKE 'notify %' AND outcome = 'applied'"
        " ORDER BY id", s=since)]


def mark(cluster: Cluster) -> int:
    return int(cluster.scalar("SELECT coalesce(max(id), 0) FROM collector.decision"))


def test_a_pending_kill_is_announced_once_and_the_kill_too(cluster: Cluster, frank: int) -> None:
    job = spawn_as(USER, "sleep", "600")
    try:
        cluster.nodes["k1"].put_on_gpu("GPU-glc-0", job.pid, GIB)
        # No tier change is seen (the user is blocked from the controller's first look, as after a tick the
        # node missed), yet the pending kill is news.
        cluster.tick()
        (warning,) = notices(cluster)
        assert "Your GPU processes on this node will be stopped at" in warning
        assert "(in less than a minute): save your work." in warning

        since = mark(cluster)
        cluster.tick()
        assert notices(cluster, since) == []  # once

        restarted = cluster.make_controller("restarted")  # a new process remembers from the decision log
        try:
            assert cluster.runner.run(restarted.tick(cluster.inventory)).database_ok
            assert notices(cluster, since) == []
        finally:
            restarted.close()

        killed_at = cluster.scalar("SELECT since FROM collector.tier_state WHERE billing_user = :u", u=USER)
        time.sleep(max(0.0, GRACE_S - (datetime.now(UTC) - killed_at).total_seconds()) + 0.2)
        since = mark(cluster)
        cluster.tick()
        assert job.wait(timeout=10) is not None
        (announced,) = notices(cluster, since)
        assert f"Your GPU processes on this node were stopped (PID {job.pid})" in announced
        assert "tier blocked" in announced
    finally:
        job.kill()
        job.wait()


def test_entering_blocked_says_so_with_the_time_left(cluster: Cluster, frank: int) -> None:
    cluster.ledger.recharge(USER, 25 * MICRO, idem_key="some", actor="test")  # 5.000000: limited
    job = spawn_as(USER, "sleep", "600")
    try:
        cluster.nodes["k1"].put_on_gpu("GPU-glc-0", job.pid, GIB)
        cluster.tick()
        cluster.ledger.adjust(USER, -10 * MICRO, idem_key="more", actor="test", reason="test: blocked")
        cluster.tick()
        (notice,) = notices(cluster)
        assert notice.startswith("notice: Balance -5.") and "you are blocked" in notice
        assert "will be stopped at" in notice
        since = mark(cluster)
        cluster.tick()
        assert notices(cluster, since) == []
    finally:
        job.kill()
        job.wait()
