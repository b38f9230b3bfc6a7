"""bench/ledger.py and bench/console.py keep working (at a tiny size: speed is measured by running the benches,
not here)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from api.routes import OPERATIONS
from bench.console import page_targets

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


def _console_bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / "console.py"), "--postings", "40000", "--runs", "2", "--raw-runs", "1",
         "--page-runs", "2", *args],
        capture_output=True, text=True, check=False, timeout=300,
    )


@pytest.mark.slow
def test_console_bench_runs_prints_its_table_and_reuses_a_kept_year(tmp_path: Path) -> None:
    result = _console_bench("--keep", str(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["measure", "result"]
    assert sum(line.startswith(("rollup: ", "raw: ")) for line in lines) == 10
    assert any(line.startswith("rollup rebuild") for line in lines)
    # the ids' values do not matter here, only that the bench fills the same rows it found ids for
    timed, untimed = page_targets({"test_id": "1", "entry_id": "1"})
    pages = [line for line in lines if line.startswith("page: ")]
    assert len(pages) == len(timed) + len(untimed)
    assert all(" p99 " in line for line in pages[:len(timed)])
    generated = next(line for line in lines if line.startswith("year generated"))

    again = _console_bench("--keep", str(tmp_path))
    assert again.returncode == 0, again.stderr
    # the same year, found and not generated again (a second generation would add to the first)
    assert next(line for line in again.stdout.splitlines() if line.startswith("year generated")) == generated
    refused = _console_bench("--keep", str(tmp_path), "--postings", "50000")
    assert refused.returncode == 2
    assert "not 50,000" in refused.stderr


def test_console_bench_times_or_names_every_get_page() -> None:
    """A page row another change adds is timed when the mapping can fill its path, else reported untimed."""
    # the ids' values do not matter here, only that the bench fills the same rows it found ids for
    timed, untimed = page_targets({"test_id": "1", "entry_id": "1"})
    for op in OPERATIONS:
        if op.page and op.method == "GET":
            pattern = re.compile(re.sub(r"\\{\w+\\}", "[^/]+", re.escape(op.path)) + "$")
            assert any(pattern.match(path) for _, path, _ in timed) or f"GET {op.path}" in untimed, op.path
    assert ("user", "/users/y7/usage", {"days": "90"}) in timed
