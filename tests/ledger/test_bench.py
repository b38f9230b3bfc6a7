"""bench/ledger.py and bench/console.py keep working (at a tiny size: speed is measured by running the benches,
not here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_runs_and_prints_its_table() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "ledger.py"), "--nodes", "4", "--batch", "2", "--year-scale", "0.0005"],
        capture_output=True, text=True, check=False, timeout=240,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["measure", "result"]
    assert any(line.startswith("replay of the same ticks: postings created") and line.endswith(" 0")
               for line in lines)
    assert any("export beancount" in line for line in lines)


@pytest.mark.slow
def test_console_bench_runs_and_prints_its_table() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "console.py"), "--postings", "40000", "--runs", "2", "--raw-runs", "1"],
        capture_output=True, text=True, check=False, timeout=240,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["measure", "result"]
    assert sum(line.startswith(("rollup: ", "raw: ")) for line in lines) == 10
    assert any(line.startswith("rollup rebuild") for line in lines)
