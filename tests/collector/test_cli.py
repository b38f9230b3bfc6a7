"""``gpuledger nodes trust|list|test`` against a real sshd and a migrated database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from collector.nodes.knownhosts import KnownHostsCache
from gpuledger.cli import main
from tests.collector.conftest import Database, FakeCommand
from tests.harness.sshd import SshdNode


@pytest.fixture
def env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sshd_node: SshdNode, client_key: Path, node_user: str,
    fake_command: FakeCommand,
) -> Path:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(f"[gpu]\ngpu01 ansible_host=127.0.0.1 ansible_port={sshd_node.port}"
                         f" gpuledger_ssh_user={node_user}\nlocal1 ansible_connection=local\n")
    monkeypatch.setenv("GPULEDGER_DATABASE_URL", "postgresql+psycopg://unused@127.0.0.1:1/none")
    monkeypatch.setenv("GPULEDGER_INVENTORY", str(inventory))
    monkeypatch.setenv("GPULEDGER_SSH_KEY", str(client_key))
    monkeypatch.setenv("GPULEDGER_KNOWN_HOSTS", str(tmp_path / "known_hosts"))
    monkeypatch.setenv("GPULEDGER_LOCAL_NODE_COMMAND", " ".join(fake_command.argv))
    return tmp_path / "known_hosts"


def test_trust_pins_then_test_connects(env: Path, sshd_node: SshdNode, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["nodes", "test", "gpu01"]) == 1  # nothing pinned yet: refused, nothing learned
    assert "hostkey_mismatch" in capsys.readouterr().err
    assert main(["nodes", "trust", "gpu01", "--fingerprint", "SHA256:not-it"]) == 1
    assert not env.exists()
    assert main(["nodes", "trust", "gpu01", "--yes"]) == 0
    out = capsys.readouterr().out
    assert "offers ssh-ed25519 SHA256:" in out and f"added: [127.0.0.1]:{sshd_node.port}" in out
    assert len(KnownHostsCache(env).pinned("127.0.0.1", sshd_node.port)) == 1
    assert main(["nodes", "test", "gpu01"]) == 1  # connected; the stand-in node command refuses "version"
    assert "gpu01: exit 2 in" in capsys.readouterr().out


def test_a_changed_key_is_not_pinned_silently(
    env: Path, sshd_node: SshdNode, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["nodes", "trust", "gpu01", "--yes"]) == 0
    sshd_node.stop()
    sshd_node.regenerate_host_key()
    sshd_node.start()
    assert main(["nodes", "trust", "gpu01", "--yes"]) == 1
    assert "--replace" in capsys.readouterr().err
    assert main(["nodes", "trust", "gpu01", "--yes", "--replace"]) == 0
    assert "replaced" in capsys.readouterr().out


def test_trust_refuses_the_local_node_and_unknown_hosts(env: Path) -> None:
    assert main(["nodes", "trust", "local1", "--yes"]) == 2
    assert main(["nodes", "trust", "nope", "--yes"]) == 2


def test_list_shows_the_registry(monkeypatch: pytest.MonkeyPatch, database: Database,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(database.admin_url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO collector.node (name, address, port, region, status, last_error)"
                          " VALUES ('gpu01', '10.0.0.1', 22, 'east', 'failed', :e)"), {"e": "boom\x1b[31m"})
    engine.dispose()
    monkeypatch.setenv("GPULEDGER_DATABASE_URL", database.app_url)
    monkeypatch.delenv("GPULEDGER_INVENTORY", raising=False)   # the registry needs no inventory
    assert main(["nodes", "list"]) == 0
    out = capsys.readouterr().out
    assert "gpu01" in out and "failed" in out and "east" in out
    assert "\x1b" not in out and "boom\\x1b[31m" in out  # a node's error text cannot drive the terminal
    assert main(["nodes", "list", "--format", "json"]) == 0
    (node,) = json.loads(capsys.readouterr().out)
    assert node == {"node": "gpu01", "status": "failed", "last_seen": None, "region": "east", "gpus": 0,
                    "listed": "yes", "error": "boom\\x1b[31m"}
    assert main(["nodes", "list", "--format", "csv", "--no-header"]) == 0
    assert capsys.readouterr().out.startswith("gpu01,failed,,east,0,yes,")
    monkeypatch.setenv("GPULEDGER_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    assert main(["nodes", "list"]) == 3
