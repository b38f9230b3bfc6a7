"""A node for the SSH-proven web login's end-to-end tests (the controller's, tests/collector/test_web_login_e2e.py,
and the browser's, tests/console/test_browser_login.py): the spool, the hook and gpuledger-balance as the role
installs them, an sshd that lets the test users log in and the controller's key run the node command through
sudo."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from collector.nodes.transport.ssh import SshSettings, SshTransport
from collector.types import Node
from tests.collector.conftest import forced_command_line
from tests.collector.harness import SimNode, SudoNodeCommand
from tests.harness.sshd import SshdNode, generate_key
from tests.hooks.node import BALANCE, HOOK, configure, create_user, remove_user


def login_users(*names: str) -> Callable[[], Iterator[dict[str, pwd.struct_passwd]]]:
    """A module-scoped fixture: fresh local users ``names`` who may log in over SSH, removed afterwards."""
    @pytest.fixture(scope="module")
    def users() -> Iterator[dict[str, pwd.struct_passwd]]:
        created = {name: create_user(name) for name in names}
        yield created
        for name in created:
            remove_user(name)
    return users


class LoginNode:
    def __init__(self, sim: SimNode, node_user: str, client_key: Path, users: dict[str, pwd.struct_passwd],
                 tmp_path: Path, console_url: str) -> None:
        self.spool = sim.directory / "web-login"
        self.spool.mkdir()
        os.chmod(self.spool, 0o1733)
        config = json.loads(sim.config_path.read_text())
        sim.config_path.write_text(json.dumps({**config, "web_login_dir": str(self.spool)}))
        hook = sim.directory / "gpuledger.sh"
        hook.write_text(configure(HOOK.read_text(), __gl_web_login_dir=str(self.spool),
                                  __gl_console_url=console_url))
        self.balance = sim.directory / "gpuledger-balance"
        self.balance.write_text(BALANCE.read_text().replace("hook=/etc/profile.d/gpuledger.sh", f"hook={hook}"))
        os.chmod(hook, 0o644)
        os.chmod(self.balance, 0o755)
        self.sudo = SudoNodeCommand(sim, node_user)
        self.user_key = generate_key(tmp_path / "user_key")
        public = self.user_key.with_name("user_key.pub").read_text().strip()
        keys = {node_user: [forced_command_line(client_key, self.sudo.argv)]}
        keys.update({name: [public] for name in users})
        self.sshd = SshdNode(tmp_path / "sshd", authorized_keys=keys).start()
        self.known_hosts = tmp_path / "known_hosts"
        self.known_hosts.write_text(self.sshd.known_hosts_line() + "\n")
        self.transport = SshTransport(SshSettings(client_key, self.known_hosts, connect_timeout_s=5,
                                                  login_timeout_s=5))
        self.node = Node(sim.name, "127.0.0.1", port=self.sshd.port, ssh_user=node_user)

    def ssh(self, user: str, command: str) -> subprocess.CompletedProcess[str]:
        """``command`` in a real SSH session of ``user`` (their login shell runs it)."""
        return subprocess.run(
            ["ssh", "-F", "/dev/null", "-i", str(self.user_key), "-o", "BatchMode=yes", "-o",
             "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "IdentitiesOnly=yes",
             "-p", str(self.sshd.port), f"{user}@127.0.0.1", command], capture_output=True, text=True, timeout=60)

    def web(self, user: str, code: str) -> subprocess.CompletedProcess[str]:
        return self.ssh(user, f"{self.balance} --web {code}")

    def close(self, run: Callable[[Coroutine[Any, Any, None]], object]) -> None:
        """Stop the sshd, drop the sudoers rule, and close the controller's connection with ``run`` (which runs
        a coroutine to its end on the loop the connection was made on)."""
        self.sshd.stop()
        self.sudo.close()
        run(self.transport.aclose())
