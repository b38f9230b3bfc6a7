"""Pinning host keys: explicit, idempotent, and never a silent change."""

from __future__ import annotations

from pathlib import Path

import asyncssh
import pytest

from collector.errors import HostKeyError
from collector.nodes.knownhosts import KnownHostsCache, fingerprint, host_pattern, pin
from collector.nodes.transport.ssh import offered_host_key
from collector.types import Node
from tests.harness.sshd import SshdNode


def _key() -> asyncssh.SSHKey:
    return asyncssh.generate_private_key("ssh-ed25519").convert_to_public()


def test_pin_adds_then_is_unchanged(tmp_path: Path) -> None:
    path, key = tmp_path / "etc" / "known_hosts", _key()
    first = pin(path, "10.0.0.1", 2222, key)
    assert (first.action, first.host, first.fingerprint) == ("added", "[10.0.0.1]:2222", fingerprint(key))
    assert pin(path, "10.0.0.1", 2222, key).action == "unchanged"
    assert path.read_text().count("\n") == 1 and oct(path.stat().st_mode & 0o777) == "0o644"
    assert [fingerprint(k) for k in KnownHostsCache(path).pinned("10.0.0.1", 2222)] == [fingerprint(key)]


def test_a_different_key_is_refused_unless_replaced(tmp_path: Path) -> None:
    path, old, new = tmp_path / "known_hosts", _key(), _key()
    pin(path, "gpu01", 22, old)
    pin(path, "gpu02", 22, _key())
    with pytest.raises(HostKeyError, match="--replace"):
        pin(path, "gpu01", 22, new)
    assert [fingerprint(k) for k in KnownHostsCache(path).pinned("gpu01", 22)] == [fingerprint(old)]
    result = pin(path, "gpu01", 22, new, replace=True)
    assert (result.action, result.previous) == ("replaced", (fingerprint(old),))
    cache = KnownHostsCache(path)
    assert [fingerprint(k) for k in cache.pinned("gpu01", 22)] == [fingerprint(new)]
    assert len(cache.pinned("gpu02", 22)) == 1  # other hosts untouched


def test_a_key_pinned_by_a_wildcard_line_is_not_rewritten(tmp_path: Path) -> None:
    path, old = tmp_path / "known_hosts", _key()
    path.write_text("gpu* " + old.export_public_key("openssh").decode())
    with pytest.raises(HostKeyError, match="by hand"):
        pin(path, "gpu01", 22, _key(), replace=True)


def test_cache_follows_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    cache = KnownHostsCache(path)
    assert cache.pinned("h", 22) == []
    pin(path, "h", 22, _key())
    assert len(cache.pinned("h", 22)) == 1
    assert host_pattern("h", 22) == "h"


@pytest.mark.anyio
async def test_offered_host_key_is_the_nodes(sshd_node: SshdNode) -> None:
    key = await offered_host_key(Node("n1", "127.0.0.1", port=sshd_node.port))
    assert key.export_public_key("openssh").decode().split()[:2] == sshd_node.host_public_key.split()
