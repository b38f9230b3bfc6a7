"""The sshd harness itself: a key-authenticated login works, a wrong host key is refused, forced commands run."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.sshd import SshdNode, ensure_user, generate_key, remove_user, sshd_available

pytestmark = [pytest.mark.root, pytest.mark.skipif(not sshd_available(), reason="needs root and openssh-server")]
USER = "glc-harness"


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[SshdNode, Path]]:
    ensure_user(USER)
    key = generate_key(tmp_path / "client_key")
    pub = key.with_name("client_key.pub").read_text().strip()
    forced = f'restrict,command="echo forced:$SSH_ORIGINAL_COMMAND" {pub}'
    sshd = SshdNode(tmp_path / "node", authorized_keys={USER: [forced]})
    with sshd:
        yield sshd, key
    remove_user(USER)


def _ssh(sshd: SshdNode, key: Path, known_hosts: Path, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ssh", "-F", "/dev/null", "-i", str(key), "-p", str(sshd.port), "-o", "BatchMode=yes",
         "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}",
         "-o", "IdentitiesOnly=yes", f"{USER}@127.0.0.1", command],
        capture_output=True, text=True, timeout=30,
    )


def test_forced_command_runs_with_pinned_host_key(node: tuple[SshdNode, Path], tmp_path: Path) -> None:
    sshd, key = node
    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts_line() + "\n")
    result = _ssh(sshd, key, known, "sample now")
    assert result.returncode == 0, result.stderr + sshd.log()
    assert result.stdout.strip() == "forced:sample now"


def test_changed_host_key_is_refused(node: tuple[SshdNode, Path], tmp_path: Path) -> None:
    sshd, key = node
    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts_line() + "\n")
    sshd.stop()
    sshd.regenerate_host_key()
    sshd.start()
    result = _ssh(sshd, key, known, "sample")
    assert result.returncode == 255
    assert "forced:" not in result.stdout
    assert "HOST IDENTIFICATION HAS CHANGED" in result.stderr or "Host key verification failed" in result.stderr
