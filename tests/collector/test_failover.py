"""Controllers as processes: SIGKILL at random points charges exactly the ground truth; two controllers
share one database with one active, and the standby takes over within two ticks of a SIGKILL."""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from ledger.money import MICRO
from tests.collector.conftest import Database
from tests.collector.harness import MICRO_PER_GPU_SECOND, Cluster, linux_user_fixture, make_nodes, remove_tree, spawn_as
from tests.collector.processes import controller_env, start_controller, write_inventory
from tests.harness.sshd import sshd_available

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.skipif(not sshd_available(), reason="needs root")]
USER = "glc-carol"
GIB = 1 << 30


carol = linux_user_fixture(USER)


@pytest.fixture
def cluster(database: Database, carol: int) -> Iterator[Cluster]:
    nodes, base = make_nodes(["f1"])
    cluster = Cluster(database, nodes)
    cluster.setup_ledger({USER: 1000 * MICRO})
    yield cluster
    cluster.close()
    remove_tree(base)


def _wait_for(predicate: object, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():  # type: ignore[operator]
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def _ticks_by(cluster: Cluster) -> dict[str, int]:
    return {r.controller: r.n for r in cluster.rows("SELECT controller, count(*) AS n FROM collector.tick GROUP BY 1")}


def test_sigkill_anywhere_charges_exactly_the_ground_truth(cluster: Cluster, tmp_path: Path) -> None:
    node = cluster.nodes["f1"]
    job = spawn_as(USER, "sleep", "600")
    node.put_on_gpu("GPU-glc-0", job.pid, GIB)
    env = controller_env(cluster.database.app_url, write_inventory(tmp_path / "hosts.ini", ["f1"]), node, tick_s=0.5)
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    try:
        for _ in range(8):
            process = start_controller(env, tmp_path / "controller.log")
            time.sleep(rng.uniform(1.0, 3.5))
            process.send_signal(signal.SIGKILL)
            process.wait()
        final = start_controller(env, tmp_path / "controller.log", "--ticks", "3")
        assert final.wait(timeout=60) == 0, (tmp_path / "controller.log").read_text()[-3000:]
    finally:
        job.kill()
        job.wait()
    first, last = cluster.rows(
        "SELECT (SELECT boottime_ns FROM collector.sample WHERE node = 'f1' ORDER BY id LIMIT 1) AS first,"
        " (SELECT s.boottime_ns FROM collector.node n JOIN collector.sample s ON s.id = n.charged_sample_id"
        "  WHERE n.name = 'f1') AS last"
    )[0]
    truth = Decimal(last - first).scaleb(-9)  # the job held the GPU from before the first sample on
    assert cluster.usage_seconds(USER, "gpu") == truth, f"seed {seed}"
    charged = cluster.charged_micro(USER)
    assert charged == int((truth * MICRO_PER_GPU_SECOND).to_integral_value("ROUND_HALF_UP")), f"seed {seed}"
    assert cluster.ledger.trial_balance().total == 0
    assert cluster.scalar("SELECT count(*) FROM collector.decision WHERE outcome = 'planned'") == 0


def test_two_controllers_one_active_and_takeover(cluster: Cluster, tmp_path: Path) -> None:
    env = controller_env(cluster.database.app_url, write_inventory(tmp_path / "hosts.ini", ["f1"]),
                         cluster.nodes["f1"], tick_s=1.0)
    first = start_controller(env, tmp_path / "a.log")
    try:
        _wait_for(lambda: sum(_ticks_by(cluster).values()) >= 1, 30)
        second = start_controller(env, tmp_path / "b.log")
        try:
            _wait_for(lambda: "standby" in (tmp_path / "b.log").read_text(), 30)
            time.sleep(2.5)
            assert len(_ticks_by(cluster)) == 1  # only the first controller ever ticked
            active_ticks = sum(_ticks_by(cluster).values())
            first.send_signal(signal.SIGKILL)
            first.wait()
            took = _wait_for(lambda: len(_ticks_by(cluster)) == 2, 10)
            assert took <= 2 * 1.0 + 1.0, f"standby took {took:.1f} s"
            assert sum(_ticks_by(cluster).values()) > active_ticks
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=30) == 0
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()


def test_run_controller_prints_one_summary_per_tick(cluster: Cluster, tmp_path: Path) -> None:
    """The call ``gpuledger run`` embeds: the controller on a database URL and an inventory, live summaries."""
    from collector.app import run_controller

    env = controller_env(cluster.database.app_url, write_inventory(tmp_path / "hosts.ini", ["f1"]),
                         cluster.nodes["f1"], tick_s=0.5)
    lines: list[str] = []
    assert run_controller(cluster.database.app_url, tmp_path / "hosts.ini", environ=env, ticks=2,
                          out=lines.append) == 0
    assert len(lines) == 2
    assert lines[0].startswith("tick ") and "nodes[ok=1]" in lines[0] and "charged=" in lines[0]
