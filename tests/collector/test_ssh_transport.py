"""What only the SSH transport promises: pinned host keys, a dedicated key, nothing implicit, bounded waits."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from collector.errors import NodeUnavailable
from collector.nodes.transport.ssh import SshSettings, SshTransport, client_options
from collector.types import Node, Outcome
from ledger.errors import ConfigError
from tests.collector.conftest import FakeCommand
from tests.harness.sshd import SshdNode, generate_key

pytestmark = pytest.mark.anyio


def _node(sshd_port: int, user: str) -> Node:
    return Node(name="n1", address="127.0.0.1", port=sshd_port, ssh_user=user)


def _transport(tmp_path: Path, key: Path, known: list[str]) -> SshTransport:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("".join(line + "\n" for line in known))
    return SshTransport(SshSettings(client_key=key, known_hosts=known_hosts, connect_timeout_s=1, login_timeout_s=2))


async def _fails(transport: SshTransport, node: Node) -> NodeUnavailable:
    try:
        session = await transport.session(node)
        await session.run(["args"], timeout_s=5)
    except NodeUnavailable as exc:
        return exc
    finally:
        await transport.aclose()
    raise AssertionError("the command ran")


async def test_changed_host_key_runs_nothing(
    tmp_path: Path, sshd_node: SshdNode, client_key: Path, node_user: str, fake_command: FakeCommand
) -> None:
    pinned = sshd_node.known_hosts_line()
    sshd_node.stop()
    sshd_node.regenerate_host_key()
    sshd_node.start()
    error = await _fails(_transport(tmp_path, client_key, [pinned]), _node(sshd_node.port, node_user))
    assert error.outcome == Outcome.HOSTKEY_MISMATCH
    assert "does not match the pinned key (SHA256:" in error.detail
    assert fake_command.runs() == []


async def test_unpinned_host_is_refused_not_learned(
    tmp_path: Path, sshd_node: SshdNode, client_key: Path, node_user: str, fake_command: FakeCommand
) -> None:
    transport = _transport(tmp_path, client_key, [])
    error = await _fails(transport, _node(sshd_node.port, node_user))
    assert error.outcome == Outcome.HOSTKEY_MISMATCH and "gpuledger nodes trust" in error.detail
    assert (tmp_path / "known_hosts").read_text() == ""
    assert fake_command.runs() == []


async def test_foreign_client_key_is_auth_failed(tmp_path: Path, sshd_node: SshdNode, node_user: str) -> None:
    other = generate_key(tmp_path / "other_key")
    error = await _fails(_transport(tmp_path, other, [sshd_node.known_hosts_line()]), _node(sshd_node.port, node_user))
    assert error.outcome == Outcome.AUTH_FAILED


async def test_closed_port_is_unreachable_at_once(tmp_path: Path, client_key: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    settings = SshSettings(client_key=client_key, known_hosts=tmp_path / "kh", connect_timeout_s=30, login_timeout_s=30)
    error = await _fails(SshTransport(settings), _node(port, "nobody"))
    # At once: a refused connection does not wait out the 30 s timeouts (a third of them leaves room).
    assert error.outcome == Outcome.UNREACHABLE and time.monotonic() - started < 10


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word (a hung sshd)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield server.getsockname()[1]
    server.close()


async def test_silent_server_times_out_within_its_timeouts(
    tmp_path: Path, client_key: Path, silent_listener: int
) -> None:
    started = time.monotonic()
    error = await _fails(_transport(tmp_path, client_key, []), _node(silent_listener, "nobody"))
    assert error.outcome == Outcome.TIMEOUT
    # A configured timeout ended it (asyncssh's connect timeout, 1 s here, covers the SSH handshake too, so
    # it fires before the 2 s login one): it waited that long, and not for asyncssh's default of 2 minutes.
    assert 1 <= time.monotonic() - started < 15


async def test_nothing_implicit_is_read(
    tmp_path: Path, sshd_node: SshdNode, client_key: Path, node_user: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text("Host *\n  Port 1\n  User root\n  IdentityFile /nonexistent\n")
    (home / ".ssh" / "known_hosts").write_text("")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("SSH_AUTH_SOCK", str(tmp_path / "no-agent.sock"))
    transport = _transport(tmp_path, client_key, [sshd_node.known_hosts_line()])
    session = await transport.session(_node(sshd_node.port, node_user))
    assert (await session.run(["args"], timeout_s=5)).ok
    await transport.aclose()


def test_every_option_is_explicit(tmp_path: Path, client_key: Path) -> None:
    settings = SshSettings(client_key=client_key, known_hosts=tmp_path / "kh", connect_timeout_s=7, login_timeout_s=8)
    key = asyncssh.read_private_key(str(client_key))
    known = asyncssh.SSHKnownHosts()
    options = client_options(settings, key, known, Node("n", "10.0.0.9", port=2200, ssh_user="meter"))
    assert options.known_hosts is known
    assert options.client_keys is not None and [k.public_data for k in options.client_keys] == [key.public_data]
    assert options.agent_path == ""
    assert (options.username, options.port) == ("meter", 2200)
    assert (options.connect_timeout, options.login_timeout) == (7, 8)
    assert (options.keepalive_interval, options.keepalive_count_max) == (15, 3)
    assert not (options.password_auth or options.kbdint_auth or options.host_based_auth or options.gss_auth)
    assert options.request_pty is False


async def test_connection_is_kept_open_across_sessions(
    tmp_path: Path, sshd_node: SshdNode, client_key: Path, node_user: str
) -> None:
    transport = _transport(tmp_path, client_key, [sshd_node.known_hosts_line()])
    node = _node(sshd_node.port, node_user)
    for _ in range(3):
        assert (await (await transport.session(node)).run(["args"], timeout_s=5)).ok
    await transport.aclose()
    await asyncio.sleep(0.2)
    assert sshd_node.log().count("Accepted publickey") == 1


def test_unreadable_client_key_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        SshTransport(SshSettings(client_key=tmp_path / "missing", known_hosts=tmp_path / "kh"))
    assert caught.value.key == "GPULEDGER_SSH_KEY"


def test_no_code_path_disables_host_key_checking() -> None:
    sources = Path(__file__).resolve().parents[2] / "collector"
    for path in sources.rglob("*.py"):
        text = path.read_text()
        assert "known_hosts=None" not in text, path
        assert "accept-new" not in text.lower(), path
