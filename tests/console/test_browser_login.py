"""The SSH-proven login in a real browser, end to end: Chromium starts the flow on the console (the app on
loopback over the test PostgreSQL), the page's code is typed by a real SSH session of a real Linux user on a
real sshd node (``gpuledger-balance --web CODE``), the controller's poller reads it over SSH (host key
checked, sudo as the rollout installs it), and the waiting page goes on by itself to that user's home."""

from __future__ import annotations

import asyncio
import pwd
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest

from collector.nodes.weblogin import WebLoginPoller
from ledger.service import Ledger
from tests.collector.conftest import client_key, node_user  # noqa: F401 (fixtures)
from tests.collector.harness import make_nodes, remove_tree
from tests.collector.login_node import LoginNode, login_users
from tests.console.browser import NEEDS_CHROMIUM, Watch, submit, visit, watched_page
from tests.harness.sshd import sshd_available

pytestmark = [NEEDS_CHROMIUM, pytest.mark.root,
              pytest.mark.skipif(not sshd_available(), reason="needs root and openssh-server")]
VISITS = ("/login", "/login/ssh")
# Names of their own, so this module and tests/collector/test_web_login_e2e.py can run at the same time.
USERS = ("glb-dana", "glb-eve")
T = TypeVar("T")


class LoopThread:
    """The controller's event loop in a thread of its own: Playwright's sync API keeps a loop running in the
    test's thread, where asyncio.run or a Runner cannot run."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=120)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


users = login_users(*USERS)


@pytest.fixture
def node(ledger: Ledger, base_url: str, node_user: str, client_key: Path,  # noqa: F811 (the fixtures above)
         users: dict[str, pwd.struct_passwd], tmp_path: Path) -> Iterator[tuple[LoginNode, WebLoginPoller,
                                                                                  LoopThread]]:
    """Node w1 of a ledger where glb-dana bills to team-dana; the poller as the controller runs it."""
    ledger.add_user("team-dana", actor="test")
    ledger.map_linux_user("w1", "glb-dana", "team-dana", actor="test")
    nodes, base = make_nodes(["w1"])
    login_node = LoginNode(nodes["w1"], node_user, client_key, users, tmp_path, f"{base_url}/login")
    runner = LoopThread()
    poller = WebLoginPoller(ledger.engine, lambda: [login_node.node], lambda _: login_node.transport,
                            command_timeout_s=20)
    try:
        yield login_node, poller, runner
    finally:
        login_node.close(runner.run)
        runner.close()
        nodes["w1"].cleanup()
        remove_tree(base)


def test_a_real_ssh_session_logs_the_browser_in(browser: Any, base_url: str, artifacts: Path,
                                                node: tuple[LoginNode, WebLoginPoller, LoopThread]) -> None:
    login_node, poller, runner = node
    watch = Watch()
    context, page = watched_page(browser, base_url, watch)
    findings = visit(page, base_url, "/login", artifacts, "login-ssh-start")
    submit(page, "form[action='/login/ssh'] button[type=submit]")
    assert urlsplit(page.url).path == "/login/ssh"
    findings += visit(page, base_url, "/login/ssh", artifacts, "login-ssh-waiting")
    code = page.inner_text("#login-code").strip()
    assert page.inner_text("#login-command").strip() == f"gpuledger-balance --web {code}"

    done = login_node.web("glb-dana", code)
    assert done.returncode == 0, done.stderr
    assert f"{base_url}/login" in done.stdout
    [outcome] = runner.run(poller.poll())
    assert (outcome.outcome, outcome.billing_user) == ("proven", "team-dana")

    # No click: htmx's poll sees the proof and the page goes on to the user's home by itself.
    page.wait_for_url(lambda url: urlsplit(url).path == "/", timeout=30_000)
    page.wait_for_load_state("load")
    assert page.inner_text("header .who").strip() == "ssh:glb-dana@w1"
    assert "team-dana" in page.inner_text("main")
    assert "gl_ssh_login" not in {c["name"] for c in context.cookies()}  # the flow cookie is gone

    # Back to the waiting page: the flow is over for this browser, it offers to start again.
    response = page.goto(f"{base_url}/login/ssh")
    assert response is not None and response.status == 200
    assert page.locator("#ssh-outcome button[type=submit]").count() == 1
    context.close()
    assert watch.problems == []
    assert "\n".join(findings) == ""


def test_a_user_billing_to_nobody_stays_on_the_waiting_page(
        browser: Any, base_url: str, node: tuple[LoginNode, WebLoginPoller, LoopThread]) -> None:
    login_node, poller, runner = node
    watch = Watch()
    context, page = watched_page(browser, base_url, watch)
    page.goto(f"{base_url}/login")
    submit(page, "form[action='/login/ssh'] button[type=submit]")
    code = page.inner_text("#login-code").strip()
    assert login_node.web("glb-eve", code).returncode == 0  # eve is mapped to no billing user
    [outcome] = runner.run(poller.poll())
    assert outcome.outcome == "unmapped_user"
    page.reload()
    assert urlsplit(page.url).path == "/login/ssh" and page.inner_text("#login-code").strip() == code
    assert "gl_session" not in {c["name"] for c in context.cookies()}
    context.close()
    assert watch.problems == []
