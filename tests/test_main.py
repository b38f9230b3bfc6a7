"""README command 1's main job, end to end: embedded PostgreSQL, every migration chain, the controller's ticks
on the local node and the API beside it; Ctrl-C stops everything cleanly; a second start reuses the data."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpuledger.cli import build_parser, main
from gpuledger.main import migration_chains

ROOT = Path(__file__).resolve().parents[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPULEDGER_")}
    env["PYTHONUNBUFFERED"] = "1"
    return {**env, **extra}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_embedded_default_serves_ticks_and_api_then_stops_cleanly(tmp_path: Path) -> None:
    var, port = tmp_path / "var", _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpuledger.cli", "run", "--var", str(var), "--tick-seconds", "2"],
        cwd=ROOT, env=_env(GPULEDGER_API_PORT=str(port)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 120
    try:
        while sum(line.startswith("tick ") for line in lines) < 2 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
        output = "\n".join(lines)
        for package, _, _ in migration_chains():
            assert f"migrated {package} to head" in output
        ticks = [line for line in lines if line.startswith("tick ")]
        assert len(ticks) == 2 and all("nodes[ok=1]" in line for line in ticks), output
        assert f"API on http://127.0.0.1:{port}/v1/" in output
        console = f"Console: http://127.0.0.1:{port}/  (admins: paste a token from `gpuledger api token create"
        assert console in output and "users: on a node, `gpuledger-balance --web CODE`" in output, output
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=10) as response:
            assert response.status == 200 and "/login/ssh" in response.read().decode()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
            health = json.load(response)
        assert response.status == 200, health
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output + rest
    assert "embedded PostgreSQL stopped" in rest
    env_file = (var / "env").read_text()
    assert "GPULEDGER_DATABASE_URL=postgresql+psycopg://gpuledger_app@127.0.0.1:" in env_file

    second = subprocess.run([sys.executable, "-m", "gpuledger.cli", "run", "--var", str(var), "--migrate-only"],
                            cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120, check=False)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"embedded PostgreSQL in {var / 'pg'}" in second.stdout


@pytest.mark.slow
def test_db_only_keeps_the_embedded_database_up_on_the_chosen_port(tmp_path: Path) -> None:
    """``--migrate-only`` leaves a usable var/env; ``--db-only --db-port`` serves the migrated database on that
    port to other commands until SIGTERM, then stops it."""
    var, port = tmp_path / "var", _free_port()
    migrated = subprocess.run([sys.executable, "-m", "gpuledger.cli", "run", "--var", str(var), "--migrate-only",
                               "--db-port", str(port)],
                              cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120, check=False)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert f"GPULEDGER_DATABASE_URL=postgresql+psycopg://gpuledger_app@127.0.0.1:{port}/" in (var / "env").read_text()

    proc = subprocess.Popen([sys.executable, "-m", "gpuledger.cli", "run", "--var", str(var), "--db-only",
                             "--db-port", str(port)],
                            cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while not any(line.startswith("database only") for line in lines) and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
        assert any(line.startswith("database only") for line in lines), "\n".join(lines)
        settings = dict(line.split("=", 1) for line in (var / "env").read_text().splitlines())
        users = subprocess.run([sys.executable, "-m", "gpuledger.cli", "users", "list", "--format", "json"],
                               cwd=ROOT, env=_env(**settings), capture_output=True, text=True, timeout=60, check=False)
        assert users.returncode == 0, users.stdout + users.stderr
        assert json.loads(users.stdout) == []
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, "\n".join(lines) + rest
    assert "embedded PostgreSQL stopped" in rest
    with pytest.raises(OSError):   # nothing listens there once it stopped
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_db_upgrade_without_a_database_names_the_key() -> None:
    result = subprocess.run([sys.executable, "-m", "gpuledger.cli", "db", "upgrade"], cwd=ROOT, env=_env(),
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 3
    assert "GPULEDGER_ADMIN_DATABASE_URL" in result.stderr


def _walk(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, f"{path} {name}")


def test_every_command_positional_and_option_has_help_without_rest_markup() -> None:
    missing, markup = [], []
    for path, parser in _walk(build_parser(), "gpuledger"):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helped = {choice.dest for choice in action._choices_actions if choice.help}
                missing += [f"{path} {name}" for name in action.choices if name not in helped]
            elif not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
        if "``" in parser.format_help() or ":func:" in parser.format_help():
            markup.append(path)
    assert not missing, missing
    assert not markup, markup


def test_version_is_the_installed_distribution(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"gpuledger {importlib.metadata.version('gpuledger')}"


def _complete(script: str, *words: str) -> list[str]:
    """What bash offers after ``words`` (the last one being completed) with the script loaded."""
    line = " ".join(shlex.quote(w) for w in words)
    probe = f"""{script}
complete -p gpuledger
COMP_WORDS=(gpuledger {line}); COMP_CWORD={len(words)}
_gpuledger
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    result = subprocess.run(["bash", "--norc", "--noprofile", "-c", probe], capture_output=True, text=True,
                            timeout=30, check=True)
    first, *offered = result.stdout.splitlines()
    assert first == "complete -F _gpuledger gpuledger"
    return offered


def test_bash_completion_is_generated_from_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", "bash"]) == 0
    script = capsys.readouterr().out
    assert set(_complete(script, "")) >= {"users", "report", "nodes", "api", "completion", "--version"}
    assert _complete(script, "rep") == ["report"]
    assert _complete(script, "report", "t") == ["trial-balance"]
    assert _complete(script, "users", "list", "--no-header", "--format", "") == ["table", "csv", "json"]
    assert _complete(script, "--actor", "x", "users", "l") == ["list"]  # options between commands are passed over
    assert _complete(script, "nodes", "list", "--f") == ["--format"]


def test_zsh_completion_is_the_bash_table_through_bashcompinit(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", "zsh"]) == 0
    zsh = capsys.readouterr().out
    assert main(["completion", "bash"]) == 0
    bash = capsys.readouterr().out
    first, rest = zsh.split("\n", 1)
    assert first == "autoload -U +X bashcompinit && bashcompinit"
    assert rest == bash.replace("# bash completion", "# zsh completion").replace(
        "completion bash`", "completion zsh`")
