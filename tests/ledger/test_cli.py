"""The ledger's subcommands, run as the ``gpuledger`` command parses them, against a real database."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from ledger import cli
from tests.ledger.conftest import LedgerDatabase


@pytest.fixture
def gl(ledger_db: LedgerDatabase, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("GPULEDGER_DATABASE_URL", ledger_db.app_url)
    monkeypatch.setenv("USER", "tester")
    monkeypatch.delenv("SUDO_USER", raising=False)
    parser = argparse.ArgumentParser(prog="gpuledger")
    cli.register(parser.add_subparsers(dest="command", required=True))

    def run(*argv: str) -> tuple[int, str, str]:
        args = parser.parse_args(argv)
        status = args.func(args)
        out, err = capsys.readouterr()
        return status, out, err
    return run


def test_a_session_at_the_command_line(gl, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert gl("users", "add", "alice", "--display-name", "Alice Wang")[0] == 0
    assert gl("projects", "add", "lab1")[0] == 0
    assert gl("users", "map", "*", "awang", "alice")[0] == 0
    status, out, _ = gl("recharge", "alice", "100.50", "--key", "order-7", "--memo", "cash")
    assert status == 0 and "posted" in out and "-100.500000 CNY" in out
    status, out, _ = gl("recharge", "alice", "100.50", "--key", "order-7")
    assert status == 0 and "already posted" in out
    status, _, err = gl("recharge", "alice", "100.51", "--key", "order-7")
    assert status == 2 and "already used with different content" in err
    assert gl("prices", "add", "gpu", "0.50", "--per", "minute", "--model", "NVIDIA A100*", "--match", "glob",
              "--valid-from", "2026-01-01")[0] == 0
    status, out, _ = gl("prices", "list")
    assert "0.50 per 60 gpu-second" in out
    assert gl("grant", "user:alice", "5", "--expires", "2026-12-31")[0] == 0
    status, out, _ = gl("balance", "alice")
    assert out.strip() == "liabilities:wallet:user:alice: 105.500000 CNY (normal)"
    assert gl("adjust", "alice", "-0.5", "--reason", "manual")[0] == 0
    assert gl("users", "exempt", "alice", "on")[0] == 0
    assert gl("users", "credit-limit", "alice", "20")[0] == 0
    status, out, _ = gl("users", "show", "alice")
    assert "credit limit 20.000000 CNY" in out and "linux user awang on *" in out
    status, out, _ = gl("report", "trial-balance")
    assert status == 0 and "total 0.000000" in out
    status, out, _ = gl("report", "statement", "alice", "--from", "2026-01-01", "--to", "2099-01-01")
    assert status == 0 and "closing 105.000000 CNY" in out
    assert gl("report", "usage", "--from", "2026-01-01", "--to", "2099-01-01", "--by", "node")[0] == 0
    assert gl("report", "revenue", "--from", "2026-01-01", "--to", "2099-01-01")[0] == 0
    journal = tmp_path / "out.journal"
    assert gl("export", "hledger", "-o", str(journal))[0] == 0
    assert "commodity 1,000.000000 CNY" in journal.read_text()
    status, out, _ = gl("audit", "verify")
    assert status == 0 and "ledger verified" in out
    head = out.split("chain head: seq ")[1].split()
    assert gl("audit", "verify", "--anchor", f"{head[0]}:{head[2]}")[0] == 0
    status, out, _ = gl("audit", "verify", "--anchor", f"{head[0]}:{'0' * 64}")
    assert status == 1 and "anchor" in out


@pytest.mark.parametrize(("argv", "message"), [
    (("recharge", "bob", "5"), "unknown user 'bob'"),
    (("recharge", "alice", "-5"), "must be positive"),
    (("recharge", "alice", "5.0000001"), "more than 6 decimal places"),
    (("recharge", "alice", "1e3"), "plain decimal"),
    (("reverse", "42", "--reason", "x"), "unknown journal entry 42"),
    # Text the CLI prints back must not carry C1 controls or bidi overrides (issue #12, item 15).
    (("recharge", "alice", "5", "--memo", "cash\u202egnp.exe"), "memo: control and format characters"),
    (("adjust", "alice", "1", "--reason", "fix\u009b31m"), "found U+009B"),
    (("users", "add", "bob", "--display-name", "Bob\u0085"), "display_name: control and format characters"),
])
def test_bad_input_exits_2_with_a_clear_message(gl, argv: tuple[str, ...], message: str) -> None:  # type: ignore[no-untyped-def]
    gl("users", "add", "alice")
    status, _, err = gl(*argv)
    assert status == 2 and message in err


def test_no_database_configured_exits_3(gl, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("GPULEDGER_DATABASE_URL")
    status, _, err = gl("users", "list")
    assert status == 3 and "GPULEDGER_DATABASE_URL" in err


def test_unreachable_database_exits_3(gl, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("GPULEDGER_DATABASE_URL", "postgresql+psycopg://gpuledger_app@127.0.0.1:1/nothing")
    status, _, err = gl("users", "list")
    assert status == 3 and "unavailable" in err
