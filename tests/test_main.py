"""README command 1's main job, end to end: embedded PostgreSQL, every migration chain, the controller's ticks
on the local node; a second start reuses the same data directory and changes nothing it should not."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpuledger.main import migration_chains

ROOT = Path(__file__).resolve().parents[1]


def _run_main(var: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPULEDGER_")}
    return subprocess.run(
        [sys.executable, "-m", "gpuledger.cli", "run", "--var", str(var), *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False,
    )


@pytest.mark.slow
def test_embedded_default_ticks_and_restarts(tmp_path: Path) -> None:
    var = tmp_path / "var"
    first = _run_main(var, "--ticks", "2", "--tick-seconds", "2", "--no-api")
    assert first.returncode == 0, first.stdout + first.stderr
    for package, _, _ in migration_chains():
        assert f"migrated {package} to head" in first.stdout
    ticks = [line for line in first.stdout.splitlines() if line.startswith("tick ")]
    assert len(ticks) == 2, first.stdout
    assert all("nodes[ok=1]" in line for line in ticks), first.stdout
    assert "embedded PostgreSQL stopped" in first.stdout
    env_file = (var / "env").read_text()
    assert "GPULEDGER_DATABASE_URL=postgresql+psycopg://gpuledger_app@127.0.0.1:" in env_file

    second = _run_main(var, "--migrate-only")
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"embedded PostgreSQL in {var / 'pg'}" in second.stdout


def test_db_upgrade_without_a_database_names_the_key() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPULEDGER_")}
    result = subprocess.run([sys.executable, "-m", "gpuledger.cli", "db", "upgrade"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 3
    assert "GPULEDGER_ADMIN_DATABASE_URL" in result.stderr
