"""Notifications against real local servers (SMTP and HTTP on 127.0.0.1), and configuration from the environment."""

from __future__ import annotations

import asyncio
import json
import os
import socketserver
import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from collector.config import ControllerConfig, SmtpSettings
from collector.enforcing.notices import Notice, Notifier
from gpuledger.cli import main
from ledger.environ import Secret
from ledger.errors import ConfigError

NOTICE = Notice(user="alice", previous="warning", tier="blocked", available=-1_500_000)


class _Smtp(socketserver.StreamRequestHandler):
    """Just enough of RFC 5321 for smtplib: greeting, EHLO, MAIL, RCPT, DATA, QUIT."""

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self) -> None:
        self.reply("220 test ESMTP")
        envelope: dict[str, object] = {"rcpt": []}
        while line := self.rfile.readline().decode().rstrip("\r\n"):
            verb = line.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                self.reply("250 test")
            elif verb == "MAIL":
                envelope["from"] = line
                self.reply("250 ok")
            elif verb == "RCPT":
                envelope["rcpt"].append(line)  # type: ignore[attr-defined]
                self.reply("250 ok")
            elif verb == "DATA":
                self.reply("354 go on")
                body = []
                while (data := self.rfile.readline().decode()) != ".\r\n":
                    body.append(data)
                envelope["body"] = "".join(body)
                self.server.messages.append(envelope)  # type: ignore[attr-defined]
                self.reply("250 queued")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("250 ok")


@pytest.fixture
def smtp_server() -> Iterator[socketserver.TCPServer]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Smtp)
    server.messages = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def webhook_server() -> Iterator[HTTPServer]:
    received: list[dict[str, object]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            received.append({"type": self.headers["Content-Type"], "body": json.loads(self.rfile.read(length))})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            """Quiet: the test reads what arrived instead."""

    server = HTTPServer(("127.0.0.1", 0), Handler)
    server.received = received  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_email_and_webhook_reach_user_and_admins(
    smtp_server: socketserver.TCPServer, webhook_server: HTTPServer
) -> None:
    notifier = Notifier(
        currency="CNY",
        smtp=SmtpSettings(host="127.0.0.1", port=smtp_server.server_address[1], sender="gpuledger@lab.example"),
        webhook_url=Secret(f"http://127.0.0.1:{webhook_server.server_address[1]}/hook"),
        admin_emails=("admin@lab.example",),
        user_email_template="{user}@lab.example",
    )
    assert asyncio.run(notifier.send_all([NOTICE])) == 0
    (mail,) = smtp_server.messages  # type: ignore[attr-defined]
    assert [r.upper() for r in mail["rcpt"]] == ["RCPT TO:<ALICE@LAB.EXAMPLE>", "RCPT TO:<ADMIN@LAB.EXAMPLE>"]
    assert "alice is now blocked (balance -1.500000 CNY)" in mail["body"]
    (hook,) = webhook_server.received  # type: ignore[attr-defined]
    assert hook["type"] == "application/json"
    assert hook["body"] == {"event": "tier_changed", "user": "alice", "from": "warning", "to": "blocked",
                            "balance": "-1.500000", "currency": "CNY",
                            "text": "gpuledger: alice is now blocked (balance -1.500000 CNY)"}


def test_an_unreachable_channel_is_counted_not_raised() -> None:
    notifier = Notifier(currency="CNY", smtp=SmtpSettings(host="127.0.0.1", port=1), webhook_url=Secret("http://127.0.0.1:1/"),
                        admin_emails=("a@b",), timeout_s=2)
    assert asyncio.run(notifier.send_all([NOTICE])) == 2


BASE = {"GPULEDGER_DATABASE_URL": "postgresql+psycopg://app:s3cret@db/gpuledger", "GPULEDGER_INVENTORY": "inv"}


def test_defaults_and_secrets_masked() -> None:
    config = ControllerConfig.from_env(BASE)
    assert (config.tick_s, config.tick_budget_s, config.dry_run, config.gpu_split) == (60.0, 45.0, False, "memory")
    assert (config.policy.limited_cpu_percent, config.policy.kill_grace_s) == (Decimal(50), 600)
    assert "s3cret" not in repr(config)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("GPULEDGER_TICK_SECONDS", "0"),
        ("GPULEDGER_TICK_BUDGET_SECONDS", "90"),
        ("GPULEDGER_DRY_RUN", "maybe"),
        ("GPULEDGER_GPU_SPLIT", "random"),
        ("GPULEDGER_CPU_QUOTA_BLOCKED_PERCENT", "0.00001"),
        ("GPULEDGER_WEBHOOK_URL", "file:///etc/passwd"),
        ("GPULEDGER_USER_EMAIL_TEMPLATE", "nobody@lab"),
        ("GPULEDGER_SMTP_HOST", "mail"),
    ],
)
def test_bad_values_fail_naming_the_key(key: str, value: str) -> None:
    environ = {**BASE, key: value}
    if key == "GPULEDGER_SMTP_HOST":
        environ["GPULEDGER_SMTP_PORT"] = "99999"
        key = "GPULEDGER_SMTP_PORT"
    with pytest.raises(ConfigError) as caught:
        ControllerConfig.from_env(environ)
    assert caught.value.key == key


def test_required_keys_and_secret_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="GPULEDGER_DATABASE_URL"):
        ControllerConfig.from_env({"GPULEDGER_INVENTORY": "x"})
    with pytest.raises(ConfigError, match="GPULEDGER_INVENTORY"):
        ControllerConfig.from_env({"GPULEDGER_DATABASE_URL": "u"})
    (tmp_path / "url").write_text("postgresql+psycopg://from-file\n")
    config = ControllerConfig.from_env({
        "GPULEDGER_DATABASE_URL_FILE": str(tmp_path / "url"), "GPULEDGER_INVENTORY": "i",
        "GPULEDGER_CPU_QUOTA_LIMITED_PERCENT": "",
    })
    assert config.database_url.reveal() == "postgresql+psycopg://from-file"
    assert config.policy.limited_cpu_percent is None


@pytest.mark.parametrize("command", [["nodes", "test", "gpu01"], ["controller", "run"]])
def test_the_cli_exits_2_on_a_bad_value_naming_its_key(command: list[str], monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    for key, value in {**BASE, "GPULEDGER_GPU_SPLIT": "random"}.items():
        monkeypatch.setenv(key, value)
    assert main(command) == 2
    assert capsys.readouterr().err == ("gpuledger: configuration GPULEDGER_GPU_SPLIT: must be one of memory, equal,"
                                       " got 'random'\n")


def test_nodes_list_needs_only_the_database_url(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """The registry is read with the ledger's settings alone: a controller key (inventory, GPU split) does not
    matter to it, a missing database URL does, and is named."""
    for key in [k for k in os.environ if k.startswith("GPULEDGER_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("GPULEDGER_GPU_SPLIT", "random")
    assert main(["nodes", "list"]) == 2
    assert "GPULEDGER_DATABASE_URL" in capsys.readouterr().err
