"""Node faults over real SSH, checked against the node's own clock with exact money: a node unreachable
for 10 ticks and back, and a changed host key (no command runs)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from collector.nodes.transport.ssh import SshSettings, SshTransport
from collector.types import Node, TickSummary
from ledger.money import MICRO
from tests.collector.conftest import Database, forced_command_line
from tests.collector.harness import MICRO_PER_GPU_SECOND, Cluster, linux_user_fixture, make_nodes, remove_tree, spawn_as
from tests.harness.sshd import SshdNode

pytestmark = [pytest.mark.root, pytest.mark.slow]
USER = "glc-dave"
GIB = 1 << 30


dave = linux_user_fixture(USER)


@pytest.fixture
def ssh_cluster(
    database: Database, dave: int, node_user: str, client_key: Path, tmp_path: Path
) -> Iterator[tuple[Cluster, SshdNode]]:
    nodes, base = make_nodes(["s1"])
    cluster = Cluster(database, nodes)
    cluster.setup_ledger({USER: 1000 * MICRO})
    line = forced_command_line(client_key, nodes["s1"].forced_command())
    sshd = SshdNode(tmp_path / "sshd", authorized_keys={node_user: [line]}).start()
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(sshd.known_hosts_line() + "\n")
    transport = SshTransport(SshSettings(client_key, known_hosts, connect_timeout_s=2, login_timeout_s=2))
    cluster.over_ssh("s1", Node("s1", "127.0.0.1", port=sshd.port, ssh_user=node_user), transport)
    yield cluster, sshd
    _stop_all(sshd)
    cluster.close()
    remove_tree(base)


def _stop_all(sshd: SshdNode) -> None:
    """Stop the listener and its session processes too: what a node outage looks like from outside."""
    master = sshd._process.pid if sshd._process else None
    sessions = []
    for entry in Path("/proc").iterdir():
        if master is not None and entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == master:
                sessions.append(int(entry.name))
    sshd.stop()
    for pid in sessions:  # the per-connection sshd processes this node's listener started
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def tick(cluster: Cluster) -> TickSummary:
    return cluster.tick()


def test_unreachable_for_ten_ticks_then_charged_once_in_full(ssh_cluster: tuple[Cluster, SshdNode]) -> None:
    cluster, sshd = ssh_cluster
    job = spawn_as(USER, "sleep", "600")
    try:
        cluster.nodes["s1"].put_on_gpu("GPU-glc-1", job.pid, GIB)
        assert tick(cluster).outcomes == {"ok": 1}
        assert tick(cluster).outcomes == {"ok": 1}
        _stop_all(sshd)
        for _ in range(10):
            assert tick(cluster).outcomes == {"unreachable": 1}
        assert cluster.scalar("SELECT status FROM collector.node WHERE name = 's1'") == "failed"
        sshd.start()
        back = tick(cluster)
        assert back.outcomes == {"ok": 1}
        assert cluster.scalar("SELECT status FROM collector.node WHERE name = 's1'") == "connected"
    finally:
        job.kill()
        job.wait()
    clocks = [int(r.boottime_ns) for r in cluster.rows("SELECT boottime_ns FROM collector.sample ORDER BY id")]
    assert len(clocks) == 3
    truth = Decimal(clocks[-1] - clocks[0]).scaleb(-9)
    assert cluster.usage_seconds(USER, "gpu") == truth
    records = cluster.rows("SELECT quantity FROM ledger.usage WHERE linux_user = :u AND resource = 'gpu' ORDER BY id",
                           u=USER)
    assert [r.quantity for r in records] == [Decimal(clocks[1] - clocks[0]).scaleb(-9),
                                             Decimal(clocks[2] - clocks[1]).scaleb(-9)]
    assert cluster.charged_micro(USER) == int((truth * MICRO_PER_GPU_SECOND).to_integral_value("ROUND_HALF_UP"))


def test_changed_host_key_runs_no_command(ssh_cluster: tuple[Cluster, SshdNode]) -> None:
    cluster, sshd = ssh_cluster
    assert tick(cluster).outcomes == {"ok": 1}
    accepted = sshd.log().count("Accepted publickey")
    _stop_all(sshd)
    sshd.regenerate_host_key()
    sshd.start()
    for _ in range(2):
        assert tick(cluster).outcomes == {"hostkey_mismatch": 1}
    assert sshd.log().count("Accepted publickey") == accepted  # never authenticated, so nothing ran
    assert cluster.scalar("SELECT count(*) FROM collector.sample") == 1
    row = cluster.rows("SELECT status, last_error FROM collector.node WHERE name = 's1'")[0]
    assert row.status == "hostkey_mismatch" and "does not match the pinned key" in row.last_error
