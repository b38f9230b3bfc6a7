"""bench/gpu_queue.py keeps working as a script (at a tiny size: speed is measured by running the bench, not here)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_queue_bench_runs_and_prints_every_scenario() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_queue.py"), "--runs", "2", "--nodes", "20", "--pending", "10"],
        capture_output=True, text=True, check=False, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for scenario in ("busy", "half", "idle-held"):
        assert any(line.startswith(f"{scenario}: CPU ms per tick (median / p95 / max)") for line in lines), scenario
    assert lines[-1].startswith("target <= 50 ms CPU per tick")


def test_no_bench_script_shadows_a_standard_library_module() -> None:
    """A bench script's own directory is first on sys.path, so bench/queue.py once hid the stdlib's queue from
    every bench (psycopg imports it)."""
    shadowing = sorted(p.stem for p in (ROOT / "bench").glob("*.py") if p.stem in sys.stdlib_module_names)
    assert shadowing == []
