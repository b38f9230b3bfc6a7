"""The project's own static checks run as part of the suite: ruff everywhere, mypy (strict on ledger/ and
control/), and the packages' dependency direction (docs/conventions.md)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Which of our packages each may import (docs/conventions.md, "Packages and dependency direction").
ALLOWED = {"probe": set(), "ledger": set(), "control": {"ledger"}, "collector": {"control", "ledger", "probe"},
           "api": {"control", "ledger"}}


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, check=False)


def test_ruff_clean() -> None:
    result = _run("ruff", "check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_clean() -> None:
    result = _run("mypy", "--no-incremental", "ledger", "control", "collector", "api", "gpuledger")
    assert result.returncode == 0, result.stdout + result.stderr


def _imported(path: Path) -> set[str]:
    """The top-level packages ``path`` imports (absolute imports only; relative ones stay in the package)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_packages_import_only_what_the_conventions_allow() -> None:
    ours = {*ALLOWED, "gpuledger"}
    wrong = [(str(path.relative_to(ROOT)), sorted(bad))
             for package, allowed in ALLOWED.items() for path in sorted((ROOT / package).rglob("*.py"))
             if (bad := (_imported(path) & ours) - allowed - {package})]
    assert wrong == []
