"""The console's SSH-proven login end to end: real users log in to a real sshd and run the real
``gpuledger-balance --web CODE``; the controller's poller runs the real ``login-codes`` over SSH (host key
checked, sudo as the rollout installs it), maps the file's owner through the ledger and proves the flow."""

from __future__ import annotations

import asyncio
import logging
import pwd
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import create_engine

from collector.nodes.lease import Lease
from collector.nodes.weblogin import WebLoginPoller
from collector.scheduler import TickLoop
from control import weblogin
from control.weblogin import FlowState
from tests.collector.conftest import Database
from tests.collector.harness import Cluster, make_nodes, remove_tree
from tests.collector.login_node import LoginNode, login_users
from tests.harness.sshd import sshd_available

pytestmark = [pytest.mark.root, pytest.mark.skipif(not sshd_available(), reason="needs root and openssh-server")]
URL = "https://console.example/login"
BROWSER = "browser-secret-" + "x" * 32
USERS = ("glw-alice", "glw-bob", "glw-carol")


users = login_users(*USERS)


@pytest.fixture
def login_node(api_database: Database, node_user: str, client_key: Path, users: dict[str, pwd.struct_passwd],
               tmp_path: Path) -> Iterator[tuple[Cluster, LoginNode, WebLoginPoller]]:
    nodes, base = make_nodes(["w1"])
    cluster = Cluster(api_database, nodes)
    node = LoginNode(cluster.nodes["w1"], node_user, client_key, users, tmp_path, URL)
    cluster.ledger.add_user("team-alice", actor="test")
    cluster.ledger.add_user("glw-bob", actor="test")
    cluster.ledger.map_linux_user("w1", "glw-alice", "team-alice", actor="test")  # carol bills to nobody
    poller = WebLoginPoller(cluster.engine, lambda: [node.node], lambda _: node.transport, command_timeout_s=20)
    yield cluster, node, poller
    node.close(cluster.runner.run)
    cluster.close()
    remove_tree(base)


def start(cluster: Cluster, now: datetime | None = None) -> weblogin.LoginFlow:
    with cluster.engine.begin() as conn:
        return weblogin.start(conn, BROWSER, now=now or datetime.now(UTC))


def state(cluster: Cluster, flow: weblogin.LoginFlow) -> FlowState | None:
    with cluster.engine.begin() as conn:
        return weblogin.poll(conn, flow.flow_id, BROWSER, now=datetime.now(UTC))


def redeem(cluster: Cluster, flow: weblogin.LoginFlow) -> weblogin.Proof | None:
    with cluster.engine.begin() as conn:
        return weblogin.redeem(conn, flow.flow_id, BROWSER, now=datetime.now(UTC))


def test_a_real_ssh_session_logs_the_browser_in_once(login_node: tuple[Cluster, LoginNode, WebLoginPoller]) -> None:
    cluster, node, poller = login_node
    flow = start(cluster)
    assert cluster.runner.run(poller.poll()) == []  # nothing written yet: the flow stays pending
    done = node.web("glw-alice", flow.display.lower())
    assert done.returncode == 0, done.stderr
    assert f"code {flow.display} left for the console as glw-alice" in done.stdout
    assert URL in done.stdout and "within a few seconds" in done.stdout
    [outcome] = cluster.runner.run(poller.poll())
    assert (outcome.outcome, outcome.billing_user, outcome.code.linux_user) == ("proven", "team-alice", "glw-alice")
    assert list(node.spool.iterdir()) == []  # read and removed
    assert state(cluster, flow) is FlowState.PROVEN
    assert redeem(cluster, flow) == weblogin.Proof("team-alice", "w1", "glw-alice")
    assert redeem(cluster, flow) is None  # a reused code logs nobody in
    assert state(cluster, flow) is FlowState.REDEEMED
    assert cluster.runner.run(poller.poll()) == []  # no flow waits: the nodes are not asked


def test_the_proof_names_whoever_wrote_the_code(login_node: tuple[Cluster, LoginNode, WebLoginPoller],
                                                caplog: pytest.LogCaptureFixture) -> None:
    cluster, node, poller = login_node
    flow = start(cluster)  # alice's browser; bob types alice's code
    assert node.web("glw-bob", flow.code).returncode == 0
    [outcome] = cluster.runner.run(poller.poll())
    assert (outcome.outcome, outcome.billing_user) == ("proven", "glw-bob")
    assert redeem(cluster, flow) == weblogin.Proof("glw-bob", "w1", "glw-bob")
    unmapped = start(cluster)
    assert node.web("glw-carol", unmapped.code).returncode == 0
    with caplog.at_level(logging.INFO, "gpuledger.controller"):
        [outcome] = cluster.runner.run(poller.poll())
    assert outcome.outcome == "unmapped_user" and state(cluster, unmapped) is FlowState.PENDING
    assert "glw-carol on w1 (billing user None): unmapped_user" in caplog.text


def test_symlinked_expired_and_malformed_codes_are_refused(login_node: tuple[Cluster, LoginNode, WebLoginPoller],
                                                           caplog: pytest.LogCaptureFixture) -> None:
    cluster, node, poller = login_node
    waiting = start(cluster)
    stale = start(cluster, now=datetime.now(UTC) - weblogin.LIFETIME - timedelta(seconds=5))
    link = node.ssh("glw-alice", f"printf '%s\\n' {waiting.code} > ~/code && ln -s ~/code {node.spool}/mine")
    assert link.returncode == 0, link.stderr
    assert node.web("glw-alice", stale.code).returncode == 0
    wrong = node.web("glw-alice", "ABCD-EFG0")
    assert wrong.returncode == 2 and "not a console login code" in wrong.stderr
    with caplog.at_level(logging.WARNING, "gpuledger.controller"):
        outcomes = cluster.runner.run(poller.poll())
    assert [(o.code.code, o.outcome) for o in outcomes] == [(stale.code, "expired")]
    assert '"refused": "symlink"' in caplog.text
    assert state(cluster, waiting) is FlowState.PENDING and list(node.spool.iterdir()) == []
    assert Path(pwd.getpwnam("glw-alice").pw_dir, "code").exists()  # the link's target is never touched


def test_only_the_active_controller_reads_codes(login_node: tuple[Cluster, LoginNode, WebLoginPoller]) -> None:
    cluster, node, poller = login_node
    lease = Lease(cluster.engine, key=0x676C77)
    loop = TickLoop(cluster.controller, lease, lambda: [], 60, cluster.metrics, lambda *_: None, web_login=poller)
    scheduler = AsyncIOScheduler(timezone=UTC)
    loop.schedule(scheduler)
    assert {job.id for job in scheduler.get_jobs()} == {"gpuledger-tick", "gpuledger-web-login"}
    try:
        flow = start(cluster)
        assert node.web("glw-alice", flow.code).returncode == 0
        cluster.runner.run(loop.poll_web_login())  # no tick has found this process active yet
        assert state(cluster, flow) is FlowState.PENDING and len(list(node.spool.iterdir())) == 1
        assert cluster.runner.run(loop.run_once()) is not None
        cluster.runner.run(loop.poll_web_login())
        assert state(cluster, flow) is FlowState.PROVEN
    finally:
        lease.release()


def test_without_the_control_schema_the_poller_waits(database: Database, caplog: pytest.LogCaptureFixture) -> None:
    engine = create_engine(database.app_url)
    try:
        poller = WebLoginPoller(engine, lambda: [], lambda _: pytest.fail("no node is asked"), command_timeout_s=5)
        assert asyncio.run(poller.poll()) == [] and asyncio.run(poller.poll()) == []
        assert [r.getMessage() for r in caplog.records if "control.web_login" in r.getMessage()] == [
            "control.web_login does not exist (the control migrations have not run): web-login codes are not read"]
    finally:
        engine.dispose()
