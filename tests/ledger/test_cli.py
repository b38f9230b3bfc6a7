"""The ledger's subcommands, run as the ``gpuledger`` command parses them, against a real database."""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import pty
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from ledger import cli
from ledger.errors import InsufficientFunds, NonPositiveAmount, RefundExceedsCharge
from ledger.records import UsageTick
from ledger.tabular import Amount, Rendering, render
from tests.ledger.conftest import LedgerDatabase
from tests.ledger.helpers import gpu, priced, tamper


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
    report = tmp_path / "usage.focus.csv"
    assert gl("export", "focus", "-o", str(report))[0] == 0
    assert report.read_text().startswith("AvailabilityZone,BilledCost,")
    status, out, _ = gl("audit", "verify")
    assert status == 0 and "ledger verified" in out
    head = out.split("chain head: seq ")[1].split()
    assert gl("audit", "verify", "--anchor", f"{head[0]}:{head[2]}")[0] == 0
    status, out, _ = gl("audit", "verify", "--anchor", f"{head[0]}:{'0' * 64}")
    assert status == 1 and "anchor" in out


@pytest.mark.parametrize(("argv", "message"), [
    (("recharge", "bob", "5"), "unknown user 'bob'"),
    # amounts in errors are in the currency, never in micro-units
    (("recharge", "alice", "-5"), "amount must be positive, got -5.000000 CNY"),
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


def test_listings_and_reports_in_every_format(gl) -> None:  # type: ignore[no-untyped-def]
    gl("users", "add", "alice", "--display-name", "Alice, the first")
    gl("users", "add", "bob")
    gl("recharge", "alice", "100.50")
    status, out, _ = gl("users", "list", "--format", "json")
    rows = json.loads(out)
    assert status == 0 and [r["user"] for r in rows] == ["alice", "bob"]
    assert rows[0]["available"] == "100.500000" and rows[0]["currency"] == "CNY"  # exact text, not a float
    assert rows[0]["credit_limit"] is None and rows[0]["name"] == "Alice, the first"
    assert rows[0]["exempt"] is False and rows[0]["project"] is None   # a flag is a boolean, nothing is null
    _, out, _ = gl("users", "list", "--format", "csv")
    parsed = list(csv.reader(io.StringIO(out)))
    assert parsed[0] == ["user", "name", "project", "exempt", "credit limit", "available", "tier"]
    assert parsed[1][:2] == ["alice", "Alice, the first"] and parsed[1][5] == "100.500000"
    _, out, _ = gl("users", "list", "--format", "csv", "--no-header")
    assert out.splitlines()[0].startswith("alice,")
    _, out, _ = gl("users", "list", "--no-header")
    assert out.splitlines()[0].startswith("alice ") and "----" not in out
    _, out, _ = gl("users", "list")
    assert out.splitlines()[0].split() == ["user", "name", "project", "exempt", "credit", "limit", "available", "tier"]
    status, out, _ = gl("report", "trial-balance", "--format", "json")
    report = json.loads(out)
    assert status == 0 and report["total"] == "0.000000" and report["currency"] == "CNY"
    assert {r["account"]: r["balance"] for r in report["rows"]}["liabilities:wallet:user:alice"] == "-100.500000"
    _, out, _ = gl("report", "statement", "alice", "--from", "2020-01-01", "--to", "2099-01-01", "--format", "json")
    statement = json.loads(out)
    assert statement["opening"] == "0.000000" and statement["closing"] == "100.500000"
    assert [r["kind"] for r in statement["rows"]] == ["recharge"] and statement["rows"][0]["amount"] == "100.500000"
    _, out, _ = gl("report", "statement", "alice", "--from", "2020-01-01", "--to", "2099-01-01", "--format", "csv")
    assert out.splitlines()[0] == "entry,when,kind,memo,amount,balance" and len(out.splitlines()) == 2
    for argv in (("projects", "list"), ("prices", "list"), ("period", "list"),
                 ("report", "usage", "--from", "2020-01-01", "--to", "2099-01-01"),
                 ("report", "revenue", "--from", "2020-01-01", "--to", "2099-01-01")):
        status, out, _ = gl(*argv, "--format", "json")
        assert status == 0 and isinstance(json.loads(out), list | dict), argv


def test_the_renderer_keeps_money_and_decimals_exact() -> None:
    out = io.StringIO()
    render(out, Rendering("json", currency="EUR"), ("what", "quantity", "amount"),
           [("a", Decimal("0.1000000000001"), Amount(-1))], {"total": Amount(2**62)})
    document = json.loads(out.getvalue(), parse_float=lambda text: pytest.fail(f"a float in the JSON: {text}"))
    assert document == {"rows": [{"what": "a", "quantity": "0.1000000000001", "amount": "-0.000001",
                                  "currency": "EUR"}], "total": "4611686018427.387904", "currency": "EUR"}
    table = io.StringIO()
    render(table, Rendering("table", currency="EUR"), ("what", "amount"), [("a", Amount(5))], {"total": Amount(5)})
    assert table.getvalue().splitlines() == ["what  amount", "----  --------", "a     0.000005", "total 0.000005 EUR"]
    with pytest.raises(ValueError, match="2 cells for 3 columns"):
        render(io.StringIO(), Rendering(), ("a", "b", "c"), [("x", "y")])


def test_money_errors_describe_amounts_in_the_currency() -> None:
    assert NonPositiveAmount(-5_000_000).describe("CNY") == "amount must be positive, got -5.000000 CNY"
    refund = RefundExceedsCharge(7, 250_000, 1_000_000)
    assert refund.describe("EUR") == "entry 7: refund of 1.000000 EUR exceeds the 0.250000 EUR still refundable"
    assert refund.details == {"entry_id": 7, "refundable": 250_000, "asked": 1_000_000}  # data stays exact
    funds = InsufficientFunds("liabilities:wallet:user:a", 1, 2)
    assert str(funds) == funds.message == "liabilities:wallet:user:a: 0.000002 asked, 0.000001 available"
    assert "micro" not in funds.describe("CNY")


def test_a_long_export_shows_progress_on_a_terminal_only(gl, ledger_db: LedgerDatabase, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    gl("users", "add", "alice")
    for n in range(3):
        gl("recharge", "alice", f"{n + 1}")
    status, out, err = gl("export", "csv")
    assert status == 0 and out.count("\n") > 3 and err == ""  # stderr not a terminal: not a byte of progress
    plain = tmp_path / "plain.csv"
    assert gl("export", "csv", "-o", str(plain))[0] == 0
    main, side = pty.openpty()
    target = tmp_path / "ledger.csv"
    env = {**os.environ, "GPULEDGER_DATABASE_URL": ledger_db.app_url}
    proc = subprocess.run([sys.executable, "-m", "gpuledger.cli", "export", "csv", "-o", str(target)],
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=side, env=env, timeout=120,
                          check=False, cwd=Path(__file__).resolve().parents[2])
    os.close(side)
    shown = b""
    with contextlib.suppress(OSError):  # EIO once the child's side is closed and everything was read
        while chunk := os.read(main, 4096):
            shown += chunk
    os.close(main)
    assert proc.returncode == 0, shown
    lines = target.read_bytes().count(b"\n")
    assert shown.decode().rstrip().endswith(f"exported {lines} lines, {target.stat().st_size // 1024} KiB")
    assert target.read_bytes() == plain.read_bytes()  # the progress path writes the same file


def test_rollup_rebuild(gl, ledger, superuser) -> None:  # type: ignore[no-untyped-def]
    priced(ledger).add_user("alice", actor="admin")
    ledger.post_usage(UsageTick("n1", (gpu("g1"), gpu("g2", minute=60))))  # 00:01 and 01:01 UTC: two hours
    tamper(superuser, "DELETE FROM ledger.usage_hourly")
    status, out, _ = gl("audit", "verify")
    assert status == 1 and out.count("usage-rollup: hour 2026-03-01T0") == 2
    status, _, err = gl("rollup", "rebuild", "--from", "2026-03-01T10:30+00:00")
    assert status == 2 and "whole UTC hour" in err
    status, out, _ = gl("rollup", "rebuild", "--from", "2026-03-01T01:00+00:00")
    assert (status, out) == (0, "usage rollup rebuilt: 1 hourly rows\n")
    status, out, _ = gl("rollup", "rebuild", "--to", "2026-03-02")  # local midnight in Asia/Shanghai
    assert (status, out) == (0, "usage rollup rebuilt: 2 hourly rows\n")
    assert gl("audit", "verify")[0] == 0
