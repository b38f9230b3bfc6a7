"""Admin overrides and settings versions (control's tables) steer enforcement at the next tick: real
PostgreSQL with every chain, the real node command, real processes and cgroups, and for the exempt
override a real sshd."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from collector.config import TierPolicy
from collector.nodes.transport.ssh import SshSettings, SshTransport
from collector.types import Node
from ledger.money import MICRO
from tests.collector.conftest import Database, forced_command_line
from tests.collector.harness import Cluster, SudoNodeCommand, linux_user_fixture, make_nodes, remove_tree, spawn_as
from tests.harness.sshd import SshdNode, sshd_available

pytestmark = [pytest.mark.root, pytest.mark.skipif(not sshd_available(), reason="needs root")]
USER = "glc-erin"
GIB = 1 << 30
# Long enough that nothing is killed while these tests look at blocks and quotas.
NO_KILL = TierPolicy(kill_grace_s=3600)


erin = linux_user_fixture(USER)


@pytest.fixture
def cluster(api_database: Database, erin: int) -> Iterator[Cluster]:
    nodes, base = make_nodes(["a1"])
    cluster = Cluster(api_database, nodes, policy=NO_KILL)
    yield cluster
    cluster.close()
    remove_tree(base)


@pytest.fixture
def job(cluster: Cluster, erin: int) -> Iterator[int]:
    process = spawn_as(USER, "sleep", "600")
    cluster.nodes["a1"].put_on_gpu("GPU-glc-0", process.pid, GIB)
    yield process.pid
    process.kill()
    process.wait()


def mark(cluster: Cluster) -> int:
    return int(cluster.scalar("SELECT coalesce(max(id), 0) FROM collector.decision"))


def decisions(cluster: Cluster, since: int) -> list[Any]:
    return cluster.rows("SELECT verb, outcome, tier, reason, override_id, override_reason FROM collector.decision"
                        " WHERE id > :s ORDER BY id", s=since)


def verbs(cluster: Cluster, since: int) -> list[tuple[str, str]]:
    return [(row.verb.split()[0], row.outcome) for row in decisions(cluster, since)]


def add_override(cluster: Cluster, action: str, until: datetime | None = None, reason: str = "test") -> int:
    with cluster.admin_engine.begin() as conn:
        return int(conn.execute(text(
            "INSERT INTO control.enforcement_override (billing_user, action, reason, until, actor)"
            " VALUES (:u, :a, :r, :t, 'admin') RETURNING id"), {"u": USER, "a": action, "r": reason, "t": until},
        ).scalar_one())


def add_settings(cluster: Cluster, **settings: object) -> int:
    with cluster.admin_engine.begin() as conn:
        return int(conn.execute(text(
            "INSERT INTO control.settings_version (settings, reason, actor) VALUES (CAST(:s AS jsonb), 'test', 'admin')"
            " RETURNING id"), {"s": json.dumps(settings)}).scalar_one())


def gpu_blocked(node: str, uid: int) -> bool:
    return Path(f"/sys/fs/cgroup/devices/glc-{node}/user-{uid}").is_dir()


def status(cluster: Cluster, node: str, uid: int) -> dict[str, str]:
    lines = (cluster.nodes[node].status_dir / f"{uid}.status").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines)


def block(cluster: Cluster) -> None:
    cluster.setup_ledger({USER: 0})
    cluster.ledger.adjust(USER, -20 * MICRO, idem_key="drain", actor="test", reason="test: blocked")


@pytest.mark.slow
def test_exempt_override_lifts_a_gpu_block_within_one_tick_and_stops_when_expired(
    api_database: Database, erin: int, node_user: str, client_key: Path, tmp_path: Path
) -> None:
    nodes, base = make_nodes(["s2"])
    cluster = Cluster(api_database, nodes, policy=NO_KILL)
    command = SudoNodeCommand(nodes["s2"], node_user)
    line = forced_command_line(client_key, command.argv)
    sshd = SshdNode(tmp_path / "sshd", authorized_keys={node_user: [line]}).start()
    process = spawn_as(USER, "sleep", "600")
    try:
        known_hosts = tmp_path / "known_hosts"
        known_hosts.write_text(sshd.known_hosts_line() + "\n")
        transport = SshTransport(SshSettings(client_key, known_hosts, connect_timeout_s=5, login_timeout_s=5))
        cluster.over_ssh("s2", Node("s2", "127.0.0.1", port=sshd.port, ssh_user=node_user), transport)
        block(cluster)
        nodes["s2"].put_on_gpu("GPU-glc-0", process.pid, GIB)
        cluster.tick()
        assert gpu_blocked("s2", erin) and status(cluster, "s2", erin)["tier"] == "blocked"

        until = datetime.now(UTC) + timedelta(seconds=8)
        override = add_override(cluster, "exempt", until, reason="paper deadline")
        since = mark(cluster)
        cluster.tick()
        rows = decisions(cluster, since)
        assert [(r.verb.split()[0], r.outcome) for r in rows] == [
            ("quota-clear", "applied"), ("gpu-unblock", "applied"), ("notify", "applied")]
        assert {(r.override_id, r.override_reason) for r in rows} == {(override, "paper deadline")}
        assert all(f"override #{override} exempt: paper deadline" in r.reason for r in rows[:2])
        assert not gpu_blocked("s2", erin)
        assert status(cluster, "s2", erin)["tier"] == "exempt"
        assert process.poll() is None

        time.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 0.5)
        since = mark(cluster)
        cluster.tick()  # the override has expired: the user's own tier applies again
        rows = decisions(cluster, since)
        assert [(r.verb.split()[0], r.outcome) for r in rows] == [
            ("quota-set", "applied"), ("gpu-block", "applied"), ("notify", "applied")]
        assert {r.override_id for r in rows} == {None}
        assert gpu_blocked("s2", erin) and status(cluster, "s2", erin)["tier"] == "blocked"
    finally:
        process.kill()
        process.wait()
        sshd.stop()
        command.close()
        cluster.close()
        remove_tree(base)


def test_a_settings_version_changes_the_tier_decision(
    cluster: Cluster, erin: int, job: int, caplog: pytest.LogCaptureFixture
) -> None:
    cluster.setup_ledger({USER: 150 * MICRO})  # normal under the environment's 100 / 10 / 0
    cluster.tick()
    assert status(cluster, "a1", erin)["tier"] == "normal"

    add_settings(cluster, tier_warning="300.000000")
    since = mark(cluster)
    cluster.tick()
    assert status(cluster, "a1", erin)["tier"] == "warning"
    assert cluster.scalar("SELECT tier FROM collector.tier_state WHERE billing_user = :u", u=USER) == "warning"
    assert verbs(cluster, since) == [("notify", "applied")]

    add_settings(cluster, tier_warning="300.000000", tier_limited="200.000000")
    since = mark(cluster)
    cluster.tick()
    assert verbs(cluster, since) == [("quota-set", "applied"), ("gpu-block", "applied"), ("notify", "applied")]
    assert gpu_blocked("a1", erin)

    version = add_settings(cluster, tier_limited="500.000000")  # above warning: refused as a whole
    since = mark(cluster)
    with caplog.at_level(logging.ERROR, logger="gpuledger.controller"):
        cluster.tick()
        cluster.tick()
    refused = [r for r in caplog.records if f"settings version {version}" in r.getMessage()]
    assert len(refused) == 1 and "tier_*" in refused[0].getMessage()
    # The environment's thresholds apply again: normal, and everything lifted.
    assert verbs(cluster, since) == [("quota-clear", "applied"), ("gpu-unblock", "applied"), ("notify", "applied")]
    assert not gpu_blocked("a1", erin)


def test_a_settings_version_turns_dry_run_on(cluster: Cluster, erin: int, job: int) -> None:
    cluster.setup_ledger({USER: 0})
    add_settings(cluster, dry_run=True)
    summary = cluster.tick()
    assert summary.dry_run and verbs(cluster, 0) == [("quota-set", "dry_run"), ("gpu-block", "dry_run")]
    assert not gpu_blocked("a1", erin)
    assert cluster.scalar("SELECT dry_run FROM collector.tick ORDER BY id DESC LIMIT 1") is True


def test_a_lift_without_until_lasts_until_the_next_tier_change(cluster: Cluster, erin: int, job: int) -> None:
    block(cluster)
    cluster.tick()
    assert gpu_blocked("a1", erin)
    override = add_override(cluster, "lift", reason="rerun for the camera-ready")
    since = mark(cluster)
    cluster.tick()
    rows = decisions(cluster, since)
    assert [(r.verb.split()[0], r.outcome) for r in rows] == [("quota-clear", "applied"), ("gpu-unblock", "applied")]
    assert {r.override_id for r in rows} == {override}
    assert status(cluster, "a1", erin)["tier"] == "exempt"
    assert cluster.tick().actions == 0  # still lifted, nothing to do

    cluster.ledger.recharge(USER, 25 * MICRO, idem_key="some", actor="test")  # 5.000000: limited, a new tier
    since = mark(cluster)
    cluster.tick()
    assert verbs(cluster, since) == [("quota-set", "applied"), ("gpu-block", "applied"), ("notify", "applied")]
    assert status(cluster, "a1", erin)["tier"] == "limited"


def test_apply_enforces_on_a_user_the_ledger_exempts(cluster: Cluster, erin: int, job: int) -> None:
    cluster.setup_ledger({USER: 5 * MICRO})  # limited, were the user not exempt
    cluster.ledger.set_exempt(USER, True, actor="test")
    cluster.tick()
    assert status(cluster, "a1", erin)["tier"] == "exempt" and not gpu_blocked("a1", erin)
    override = add_override(cluster, "apply", reason="abuse report")
    since = mark(cluster)
    cluster.tick()
    rows = decisions(cluster, since)
    assert [(r.verb.split()[0], r.outcome) for r in rows] == [
        ("quota-set", "applied"), ("gpu-block", "applied"), ("notify", "applied")]
    assert {(r.override_id, r.tier) for r in rows} == {(override, "limited")}
    assert gpu_blocked("a1", erin)


def test_without_the_control_schema_the_environment_rules(database: Database, erin: int,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    nodes, base = make_nodes(["a2"])
    cluster = Cluster(database, nodes, policy=NO_KILL)
    try:
        cluster.setup_ledger({USER: 150 * MICRO})
        assert cluster.tick().database_ok and cluster.tick().database_ok
        said = [r.getMessage() for r in caplog.records if "control.settings_version" in r.getMessage()]
        assert said == ["control.settings_version does not exist (the control migrations have not run):"
                        " admin settings and overrides are not applied"]
    finally:
        cluster.close()
        remove_tree(base)
