""""Test connection now" end to end: rows in control.connection_test claimed and run by the active controller
against real sshd nodes (host key verified), results written back, nothing charged."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from collector.nodes.conntest import ConnectionTests
from collector.nodes.lease import Lease
from collector.nodes.transport.ssh import SshSettings, SshTransport
from collector.scheduler import TickLoop
from collector.types import Node
from tests.collector.conftest import Database, FakeCommand, forced_command_line
from tests.collector.harness import Cluster, make_nodes, remove_tree
from tests.harness.sshd import SshdNode, generate_key

pytestmark = [pytest.mark.root]


@pytest.fixture
def cluster(api_database: Database) -> Iterator[Cluster]:
    nodes, base = make_nodes(["t1"])
    cluster = Cluster(api_database, nodes)
    yield cluster
    cluster.close()
    remove_tree(base)


@pytest.fixture
def sampling_sshd(cluster: Cluster, node_user: str, client_key: Path, tmp_path: Path) -> Iterator[SshdNode]:
    line = forced_command_line(client_key, cluster.nodes["t1"].forced_command())
    with SshdNode(tmp_path / "sampling", authorized_keys={node_user: [line]}) as sshd:
        yield sshd


def request(cluster: Cluster, *nodes: str) -> list[int]:
    with cluster.admin_engine.begin() as conn:
        return [int(conn.execute(text(
            "INSERT INTO control.connection_test (node, requested_by, request_id) VALUES (:n, 'admin', 'req')"
            " RETURNING id"), {"n": node}).scalar_one()) for node in nodes]


def results(cluster: Cluster) -> dict[str, Any]:
    rows = cluster.rows("SELECT node, outcome, detail, started_at, finished_at FROM control.connection_test"
                        " ORDER BY id")
    return {row.node: row for row in rows}


def ssh_tests(cluster: Cluster, inventory: list[Node], known_hosts: Path, client_key: Path) -> ConnectionTests:
    transport = SshTransport(SshSettings(client_key, known_hosts, connect_timeout_s=5, login_timeout_s=5))
    return ConnectionTests(cluster.engine, lambda: inventory, lambda node: transport, command_timeout_s=10)


def test_connection_tests_over_ssh(
    cluster: Cluster, sampling_sshd: SshdNode, node_user: str, client_key: Path, tmp_path: Path,
    fake_command: FakeCommand,
) -> None:
    line = forced_command_line(client_key, fake_command.argv)
    with SshdNode(tmp_path / "rekeyed", authorized_keys={node_user: [line]}) as rekeyed:
        other = generate_key(tmp_path / "other_host_key", comment="not the node's")
        other_key = " ".join(other.with_name(other.name + ".pub").read_text().split()[:2])
        known_hosts = tmp_path / "known_hosts"
        known_hosts.write_text(f"{sampling_sshd.known_hosts_line()}\n[127.0.0.1]:{rekeyed.port} {other_key}\n")
        inventory = [Node("good", "127.0.0.1", port=sampling_sshd.port, ssh_user=node_user),
                     Node("rekeyed", "127.0.0.1", port=rekeyed.port, ssh_user=node_user)]
        tests = ssh_tests(cluster, inventory, known_hosts, client_key)
        request(cluster, "good", "rekeyed", "gone")
        done = cluster.runner.run(tests.poll())
        assert sorted(r.outcome for r in done) == ["hostkey_mismatch", "ok", "unknown_node"]
        assert cluster.runner.run(tests.poll()) == []  # each request runs once

    rows = results(cluster)
    good = rows["good"]
    assert good.outcome == "ok" and good.started_at <= good.finished_at
    assert good.detail["hostname"] == os.uname().nodename and good.detail["error"] is None
    assert isinstance(good.detail["latency_ms"], int) and good.detail["latency_ms"] >= 0
    assert rows["rekeyed"].outcome == "hostkey_mismatch"
    assert "does not match the pinned key" in rows["rekeyed"].detail["error"]
    assert fake_command.runs() == []  # a changed host key runs nothing
    assert rows["gone"].outcome == "unknown_node" and rows["gone"].detail["hostname"] is None
    # A connection test charges nothing and keeps no evidence.
    assert cluster.scalar("SELECT count(*) FROM ledger.usage") == 0
    assert cluster.scalar("SELECT count(*) FROM collector.sample") == 0


def test_only_the_active_controller_runs_connection_tests(
    cluster: Cluster, sampling_sshd: SshdNode, node_user: str, client_key: Path, tmp_path: Path
) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(sampling_sshd.known_hosts_line() + "\n")
    inventory = [Node("good", "127.0.0.1", port=sampling_sshd.port, ssh_user=node_user)]
    tests = ssh_tests(cluster, inventory, known_hosts, client_key)
    leases = [Lease(cluster.engine, key=0x676C63), Lease(cluster.engine, key=0x676C63)]
    standby_controller = cluster.make_controller("standby")
    loops = [TickLoop(controller, lease, lambda: [], 60, cluster.metrics, lambda *_: None, tests)
             for controller, lease in zip((cluster.controller, standby_controller), leases, strict=True)]
    try:
        assert cluster.runner.run(loops[0].run_once()) is not None
        assert cluster.runner.run(loops[1].run_once()) is None  # standby
        request(cluster, "good")
        cluster.runner.run(loops[1].poll_connection_tests())
        assert results(cluster)["good"].started_at is None
        cluster.runner.run(loops[0].poll_connection_tests())
        assert results(cluster)["good"].outcome == "ok"
    finally:
        standby_controller.close()
        for lease in leases:
            lease.release()


def test_without_the_control_schema_connection_tests_wait(database: Database, caplog: pytest.LogCaptureFixture) -> None:
    nodes, base = make_nodes(["t2"])
    cluster = Cluster(database, nodes)
    try:
        tests = ConnectionTests(cluster.engine, lambda: [], lambda node: cluster.transports["t2"], command_timeout_s=5)
        assert asyncio.run(tests.poll()) == [] and asyncio.run(tests.poll()) == []
        assert [r.getMessage() for r in caplog.records if "control.connection_test" in r.getMessage()] == [
            "control.connection_test does not exist (the control migrations have not run):"
            " connection tests are not run"]
    finally:
        cluster.close()
        remove_tree(base)
