"""End to end on one node: usage -> ledger -> tier -> enforcement -> lifted after a recharge.

Real: the node command (the probe with the NVML fake), the test users' processes, cgroup v1 files,
PostgreSQL and the ledger. The ground truth is the node's own boot clock in the stored samples.
"""

from __future__ import annotations

import pwd
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import text

from collector.charging import retention
from collector.types import TickSummary
from ledger.money import MICRO
from tests.collector.conftest import Database
from tests.collector.harness import MICRO_PER_GPU_SECOND, Cluster, linux_user_fixture, make_nodes, remove_tree, spawn_as
from tests.harness.sshd import sshd_available

pytestmark = [pytest.mark.root, pytest.mark.skipif(not sshd_available(), reason="needs root")]
ALICE = "glc-alice"
GIB = 1 << 30


alice = linux_user_fixture(ALICE)


@pytest.fixture
def cluster(database: Database, alice: int) -> Iterator[Cluster]:
    nodes, base = make_nodes(["n1"])
    cluster = Cluster(database, nodes)
    yield cluster
    cluster.close()
    remove_tree(base)


def tick(cluster: Cluster) -> TickSummary:
    return cluster.tick()


def decisions(cluster: Cluster, since: int = 0) -> list[tuple[str, str]]:
    rows = cluster.rows("SELECT verb, outcome FROM collector.decision WHERE id > :s ORDER BY id", s=since)
    return [(row.verb.split()[0], row.outcome) for row in rows]


def last_decision(cluster: Cluster) -> int:
    return int(cluster.scalar("SELECT coalesce(max(id), 0) FROM collector.decision"))


def status_field(cluster: Cluster, uid: int, key: str) -> str:
    text = (cluster.nodes["n1"].status_dir / f"{uid}.status").read_text()
    return dict(line.split("=", 1) for line in text.splitlines())[key]


def sample_clock(cluster: Cluster) -> list[int]:
    return [int(r.boottime_ns) for r in cluster.rows("SELECT boottime_ns FROM collector.sample ORDER BY id")]


def test_usage_tier_enforcement_and_lift(cluster: Cluster, alice: int) -> None:
    cluster.setup_ledger({ALICE: 10 * MICRO + 10})  # 10.000010: warning, 10 micro (0.1 GPU-s) above limited
    node = cluster.nodes["n1"]
    job = spawn_as(ALICE, "sleep", "600")
    try:
        node.put_on_gpu("GPU-glc-0", job.pid, GIB)
        first = tick(cluster)
        assert first.outcomes == {"ok": 1} and first.database_ok and first.charged == 0
        assert status_field(cluster, alice, "tier") == "warning"

        time.sleep(0.3)
        second = tick(cluster)
        clock = sample_clock(cluster)
        gpu_seconds = Decimal(clock[1] - clock[0]).scaleb(-9)
        # Exactly the node's boot-clock interval, at the exact price, charged once.
        assert cluster.usage_seconds(ALICE, "gpu") == gpu_seconds
        exact = gpu_seconds * MICRO_PER_GPU_SECOND
        assert cluster.charged_micro(ALICE) == int(exact.to_integral_value("ROUND_HALF_UP"))
        assert second.charged == cluster.charged_micro(ALICE)
        assert decisions(cluster) == [("quota-set", "applied"), ("gpu-block", "applied"), ("notify", "applied")]
        quota = Path(f"/sys/fs/cgroup/cpu/glc-n1/user-{alice}/cpu.cfs_quota_us").read_text().strip()
        assert quota == "100000"  # 50 % of this node's 2 CPUs: 1 CPU per 100 ms period
        assert Path(f"/sys/fs/cgroup/devices/glc-n1/user-{alice}").is_dir()
        assert (status_field(cluster, alice, "tier"), status_field(cluster, alice, "gpu_blocked")) == ("limited", "1")

        mark = last_decision(cluster)
        assert tick(cluster).actions == 0  # converged: a second apply changes nothing
        assert decisions(cluster, mark) == []

        cluster.ledger.adjust(ALICE, -20 * MICRO, idem_key="drain", actor="test", reason="test: force blocked")
        mark = last_decision(cluster)
        tick(cluster)
        assert decisions(cluster, mark) == [("quota-set", "applied"), ("kill", "applied"), ("notify", "applied")]
        assert job.wait(timeout=10) is not None  # the GPU job is gone: killed after the (zero) grace
        assert status_field(cluster, alice, "tier") == "blocked"
        node.clear_gpu(job.pid)

        cluster.ledger.recharge(ALICE, 500 * MICRO, idem_key="pay", actor="test")
        mark = last_decision(cluster)
        lifted = tick(cluster)
        lifts = [("quota-clear", "applied"), ("gpu-unblock", "applied"), ("notify", "applied")]
        assert decisions(cluster, mark) == lifts
        assert lifted.actions == 3
        quota_file = Path(f"/sys/fs/cgroup/cpu/glc-n1/user-{alice}/cpu.cfs_quota_us")
        assert not quota_file.exists() or quota_file.read_text().strip() == "-1"
        assert not Path(f"/sys/fs/cgroup/devices/glc-n1/user-{alice}").exists()
        assert status_field(cluster, alice, "tier") == "normal"
    finally:
        job.kill()
        job.wait()
    assert pwd.getpwuid(alice).pw_name == ALICE


def test_retention_keeps_what_charging_needs(cluster: Cluster) -> None:
    cluster.setup_ledger({})
    for _ in range(3):
        tick(cluster)
    with cluster.admin_engine.begin() as conn:
        conn.execute(text("UPDATE collector.sample SET received_at = received_at - interval '40 days'"))
    # Other accounts' processes on this machine are unknown to this ledger: their kept records pin samples too.
    needed = cluster.scalar(
        "SELECT count(*) FROM collector.sample s WHERE s.id IN (SELECT charged_sample_id FROM collector.node)"
        " OR s.id IN (SELECT sample_id FROM collector.usage_outbox)"
    )
    with cluster.controller.engine.begin() as conn:   # as the app role, like the controller
        assert retention.prune_samples(conn, 30) == 3 - needed
    assert cluster.scalar("SELECT count(*) FROM collector.sample") == needed
    assert cluster.scalar(
        "SELECT count(*) FROM collector.node n JOIN collector.sample s ON s.id = n.charged_sample_id"
    ) == 1


def test_dry_run_records_decisions_and_runs_nothing(database: Database, alice: int) -> None:
    nodes, base = make_nodes(["dry"])
    cluster = Cluster(database, nodes, dry_run=True)
    try:
        cluster.setup_ledger({ALICE: 0})  # 0.000000: limited
        job = spawn_as(ALICE, "sleep", "600")
        try:
            nodes["dry"].put_on_gpu("GPU-glc-0", job.pid, GIB)
            tick(cluster)
            assert decisions(cluster) == [("quota-set", "dry_run"), ("gpu-block", "dry_run")]
            assert not Path(f"/sys/fs/cgroup/cpu/glc-dry/user-{alice}").exists()
            assert not (nodes["dry"].status_dir / f"{alice}.status").exists()
            assert job.poll() is None
        finally:
            job.kill()
            job.wait()
    finally:
        cluster.close()
        remove_tree(base)
