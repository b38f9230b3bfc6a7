"""README command 1's main job, end to end: embedded PostgreSQL, every migration chain, the controller's ticks
on the local node and the API beside it; Ctrl-C stops everything cleanly; a second start reuses the data."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

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
        assert f"API on http://127.0.0.1:{port}" in output
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


def test_db_upgrade_without_a_database_names_the_key() -> None:
    result = subprocess.run([sys.executable, "-m", "gpuledger.cli", "db", "upgrade"], cwd=ROOT, env=_env(),
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 3
    assert "GPULEDGER_ADMIN_DATABASE_URL" in result.stderr
