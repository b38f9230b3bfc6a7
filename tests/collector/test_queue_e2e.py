"""The GPU queue end to end (docs/queue.md, "The per-tick driver"): real users log in to a real sshd and run
the real ``gpu-request``; the controller's tick reads the drop box with ``gpu-requests`` over SSH (host key
checked, sudo as the rollout installs it), decides in PostgreSQL and writes each user's answer with
``queue-status``, which the user's ``gpu-request --status`` shows."""

from __future__ import annotations

import json
import logging
import os
import pwd
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from collector.queueing import driver
from collector.types import QueueSettings
from ledger.money import MICRO
from tests.collector.conftest import Database
from tests.collector.harness import Cluster, make_nodes, remove_tree, spawn_as
from tests.collector.login_node import LoginNode, login_users
from tests.harness.sshd import sshd_available
from tests.hooks.test_gpu_request import TOOL, configured

pytestmark = [pytest.mark.root, pytest.mark.skipif(not sshd_available(), reason="needs root and openssh-server")]
ALICE, BOB = "glq-alice", "glq-bob"
MODEL = "a100-sxm4-80gb"  # the harness's "NVIDIA A100-SXM4-80GB" as users type it

users = login_users(ALICE, BOB)


class QueueNode:
    """A LoginNode with the GPU-request drop box and ``gpu-request`` installed as the node role does."""

    def __init__(self, cluster: Cluster, login: LoginNode) -> None:
        sim = cluster.nodes["q1"]
        self.login = login
        self.box = sim.directory / "gpu-requests"
        self.box.mkdir()
        os.chmod(self.box, 0o1733)
        self.held = sim.directory / "gpu-requests.held"  # made by the node command's first gpu-requests
        sim.status_dir.mkdir(mode=0o755, exist_ok=True)
        self.status_dir = sim.status_dir
        config = json.loads(sim.config_path.read_text())
        sim.config_path.write_text(json.dumps({**config, "gpu_request_dir": str(self.box),
                                               "gpu_request_hold_dir": str(self.held)}))
        self.tool = sim.directory / "gpu-request"
        self.tool.write_text(configured(TOOL.read_text(), REQUEST_DIR=str(self.box), STATUS_DIR=str(sim.status_dir),
                                        POLL_S="0.1"))
        os.chmod(self.tool, 0o755)

    def gpu_request(self, user: str, *args: str) -> str:
        done = self.login.ssh(user, " ".join([str(self.tool), *args]))
        assert done.returncode == 0, done.stderr
        return done.stdout

    def answer(self, uid: int) -> dict[str, str]:
        lines = (self.status_dir / f"{uid}.queue").read_text().splitlines()
        return dict(line.split("=", 1) for line in lines)


@pytest.fixture
def queue(api_database: Database, node_user: str, client_key: Path, users: dict[str, pwd.struct_passwd],
          tmp_path: Path) -> Iterator[tuple[Cluster, QueueNode, dict[str, int]]]:
    nodes, base = make_nodes(["q1"])
    cluster = Cluster(api_database, nodes, queue=QueueSettings())
    login = LoginNode(cluster.nodes["q1"], node_user, client_key, users, tmp_path, "https://console.example/login")
    node = QueueNode(cluster, login)
    cluster.setup_ledger({ALICE: 100 * MICRO, BOB: 100 * MICRO})
    cluster.over_ssh("q1", login.node, login.transport)
    yield cluster, node, {name: entry.pw_uid for name, entry in users.items()}
    login.close(cluster.runner.run)
    cluster.close()
    remove_tree(base)


def only_request(answer: dict[str, str]) -> tuple[int, dict[str, str]]:
    [rid] = answer["requests"].split(",")
    prefix = f"request.{rid}."
    return int(rid), {k[len(prefix):]: v for k, v in answer.items() if k.startswith(prefix)}


def grants(cluster: Cluster) -> list[Any]:
    return cluster.rows("SELECT q.billing_user, g.gpu_index FROM control.queue_gpu g JOIN control.queue_request q"
                        " ON q.id = g.request_id WHERE g.kind = 'grant' ORDER BY g.id")


def test_a_request_is_granted_and_the_next_in_line_after_release(
        queue: tuple[Cluster, QueueNode, dict[str, int]]) -> None:
    cluster, node, uid = queue
    dropped = node.gpu_request(ALICE, "--model", MODEL, "--count", "2", "--hours", "2")
    nonce = re.search(r"nonce (\S+)\)", dropped)
    assert nonce is not None
    cluster.tick()
    rid, mine = only_request(node.answer(uid[ALICE]))
    assert (mine["state"], mine["nonce"]) == ("offered", nonce.group(1))
    assert mine["gpus"] == f"q1:0:{MODEL},q1:1:{MODEL}" and mine["offer_expires"]
    assert list(node.box.iterdir()) == [] and list(node.held.iterdir()) == []  # read, filed and acknowledged

    node.gpu_request(ALICE, "--claim", str(rid))
    cluster.tick()
    assert only_request(node.answer(uid[ALICE]))[1]["state"] == "granted"
    assert "granted" in node.gpu_request(ALICE, "--status")

    node.gpu_request(BOB, "--count", "1")
    cluster.tick()
    bob_rid, bobs = only_request(node.answer(uid[BOB]))
    assert (bobs["state"], bobs["position"]) == ("queued", "1")

    node.gpu_request(ALICE, "--release")
    cluster.tick()  # the release frees both GPUs and bob is offered one in the same tick
    assert only_request(node.answer(uid[ALICE]))[1]["state"] == "ended"
    assert only_request(node.answer(uid[BOB]))[1]["state"] == "offered"
    node.gpu_request(BOB, "--claim", str(bob_rid))
    cluster.tick()
    assert only_request(node.answer(uid[BOB]))[1]["state"] == "granted"
    assert [tuple(r) for r in grants(cluster)] == [(ALICE, 0), (ALICE, 1), (BOB, 0)]


def test_a_malformed_file_is_reported_and_loses_nothing(queue: tuple[Cluster, QueueNode, dict[str, int]],
                                                        caplog: pytest.LogCaptureFixture) -> None:
    cluster, node, uid = queue
    done = node.login.ssh(BOB, f"printf '%s' '{{\"op\": \"request\"}}' > {node.box}/{'ab' * 16}")
    assert done.returncode == 0, done.stderr
    node.gpu_request(ALICE, "--count", "1")
    with caplog.at_level(logging.INFO, logger="gpuledger"):
        cluster.tick()
    assert f"refused a file of uid {uid[BOB]}: malformed" in caplog.text
    assert only_request(node.answer(uid[ALICE]))[1]["state"] == "offered"
    assert list(node.box.iterdir()) == []


def restart(cluster: Cluster) -> None:
    """A fresh controller process: nothing the old one kept in memory survives."""
    cluster.controller.close()
    cluster.controller = cluster.make_controller()


def test_a_controller_killed_before_its_commit_loses_nothing_and_a_fresh_one_grants_once(
        queue: tuple[Cluster, QueueNode, dict[str, int]], monkeypatch: pytest.MonkeyPatch) -> None:
    cluster, node, uid = queue
    real = driver.queue_tick.run

    def dies_after_deciding(*args: Any, **kwargs: Any) -> Any:
        real(*args, **kwargs)
        raise OperationalError("COMMIT", {}, Exception("controller lost its connection mid-tick"))

    node.gpu_request(ALICE, "--count", "1")
    monkeypatch.setattr(driver.queue_tick, "run", dies_after_deciding)
    summary = cluster.tick()
    assert not summary.database_ok
    assert cluster.scalar("SELECT count(*) FROM control.queue_request") == 0  # rolled back, nothing half-done
    assert list(node.box.iterdir()) == [] and len(list(node.held.iterdir())) == 1  # handed over, still held
    monkeypatch.setattr(driver.queue_tick, "run", real)
    restart(cluster)
    cluster.tick()
    rid, mine = only_request(node.answer(uid[ALICE]))
    assert mine["state"] == "offered" and list(node.held.iterdir()) == []  # acknowledged once committed

    node.gpu_request(ALICE, "--claim", str(rid))
    monkeypatch.setattr(driver.queue_tick, "run", dies_after_deciding)
    cluster.tick()
    assert grants(cluster) == [] and len(list(node.held.iterdir())) == 1
    monkeypatch.setattr(driver.queue_tick, "run", real)
    restart(cluster)
    cluster.tick()
    cluster.tick()
    assert [tuple(r) for r in grants(cluster)] == [(ALICE, 0)]
    assert cluster.scalar("SELECT count(*) FROM control.queue_request") == 1
    assert [tuple(r) for r in cluster.rows("SELECT op, outcome FROM control.queue_op ORDER BY at")] == [
        ("request", "queued"), ("claim", "claimed")]


def test_operations_served_again_after_a_lost_acknowledgement_change_nothing(
        queue: tuple[Cluster, QueueNode, dict[str, int]], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A release of everything and a cancel, each read again every tick while their acknowledgement is lost: a
    replay of the release would end the grant that came after it."""
    cluster, node, uid = queue
    node.gpu_request(ALICE, "--count", "1")
    cluster.tick()
    node.gpu_request(ALICE, "--claim", str(only_request(node.answer(uid[ALICE]))[0]))
    cluster.tick()

    async def lost(*args: Any) -> None:
        return None

    monkeypatch.setattr(driver.QueueDriver, "_acknowledge", lost)
    node.gpu_request(ALICE, "--release")
    node.gpu_request(BOB, "--count", "1")
    cluster.tick()
    bob_rid = only_request(node.answer(uid[BOB]))[0]
    node.gpu_request(BOB, "--cancel", str(bob_rid))
    node.gpu_request(ALICE, "--count", "1")
    cluster.tick()
    second = max(int(r) for r in node.answer(uid[ALICE])["requests"].split(","))
    node.gpu_request(ALICE, "--claim", str(second))
    with caplog.at_level(logging.INFO, logger="gpuledger"):
        cluster.tick()
        cluster.tick()
    answer = node.answer(uid[ALICE])
    assert answer[f"request.{second}.state"] == "granted"  # the replayed release of everything ended nothing
    assert "release: replayed: released 1" in caplog.text and "cancel: replayed: cancelled" in caplog.text
    assert len(list(node.held.iterdir())) == 5  # every operation since the acknowledgements stopped
    assert only_request(node.answer(uid[BOB]))[1]["state"] == "ended"
    assert cluster.scalar("SELECT count(*) FROM control.queue_op") == 7
    assert cluster.scalar("SELECT count(*) FROM control.queue_request WHERE state = 'refused'") == 0

    monkeypatch.undo()
    cluster.tick()
    assert list(node.held.iterdir()) == []
    assert node.answer(uid[ALICE])[f"request.{second}.state"] == "granted"
    assert [tuple(r) for r in grants(cluster)] == [(ALICE, 0), (ALICE, 0)]


def denied(cluster: Cluster, uid: int) -> object:
    """What the node's real ``gpu-state`` says is denied to ``uid`` (its cgroup v1 device rules)."""
    transport = cluster.nodes["q1"].local_transport()

    async def read() -> bytes:
        session = await transport.session(cluster.reach["q1"])
        try:
            return (await session.run(["gpu-state", str(uid)], timeout_s=20)).stdout
        finally:
            await transport.aclose()
    return json.loads(cluster.runner.run(read()))["denied_minors"]


def test_others_are_masked_from_a_granted_gpu_until_it_is_released(
        queue: tuple[Cluster, QueueNode, dict[str, int]]) -> None:
    cluster, node, uid = queue
    job = spawn_as(BOB, "sleep", "600")  # bob is on the node, so the tick converges him
    try:
        node.gpu_request(ALICE, "--count", "1")
        cluster.tick()
        rid, mine = only_request(node.answer(uid[ALICE]))
        assert mine["state"] == "offered" and denied(cluster, uid[BOB]) == [0]  # an offer is masked too
        node.gpu_request(ALICE, "--claim", str(rid))
        cluster.tick()
        assert only_request(node.answer(uid[ALICE]))[1]["state"] == "granted"
        assert denied(cluster, uid[BOB]) == [0] and denied(cluster, uid[ALICE]) == []
        node.gpu_request(ALICE, "--release")
        cluster.tick()
        assert denied(cluster, uid[BOB]) == []
    finally:
        job.kill()
        job.wait()


def test_at_level_2_a_process_without_a_grant_is_stopped_while_someone_waits(
        api_database: Database, node_user: str, client_key: Path, users: dict[str, pwd.struct_passwd],
        tmp_path: Path) -> None:
    nodes, base = make_nodes(["q1"])
    cluster = Cluster(api_database, nodes, queue=QueueSettings(levels={MODEL: 2}, grace_s=0))
    login = LoginNode(cluster.nodes["q1"], node_user, client_key, users, tmp_path, "https://console.example/login")
    try:
        node = QueueNode(cluster, login)
        cluster.setup_ledger({ALICE: 100 * MICRO, BOB: 100 * MICRO})
        cluster.over_ssh("q1", login.node, login.transport)
        job = spawn_as(BOB, "sleep", "600")
        cluster.nodes["q1"].put_on_gpu("GPU-glc-0", job.pid, 2 << 30)
        cluster.tick()  # nobody waits: bob is only warned
        assert job.poll() is None
        node.gpu_request(ALICE, "--count", "2")
        cluster.tick()  # alice waits for both GPUs: bob's process is stopped (SIGTERM, then SIGKILL)
        assert job.wait(timeout=30) is not None
        cluster.nodes["q1"].clear_gpu(job.pid)
        cluster.tick()
        assert only_request(node.answer(users[ALICE].pw_uid))[1]["state"] == "offered"
        [kill] = cluster.rows("SELECT verb, reason, outcome FROM collector.decision WHERE verb LIKE 'kill %'")
        assert "without a grant" in kill.reason
    finally:
        login.close(cluster.runner.run)
        cluster.close()
        remove_tree(base)
