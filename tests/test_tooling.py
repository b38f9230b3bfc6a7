"""The project's own static checks run as part of the suite: ruff everywhere, mypy (strict on ledger/ and
control/), and the packages' dependency direction (docs/conventions.md)."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Which of our packages each may import (docs/conventions.md, "Packages and dependency direction").
ALLOWED = {"probe": set(), "ledger": set(), "control": {"ledger"}, "collector": {"control", "ledger", "probe"},
           "api": {"control", "ledger"}}


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, check=False)


def test_ruff_clean() -> None:
    result = _run("ruff", "check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_sqlfluff_clean() -> None:
    """Every migration's SQL, PostgreSQL dialect, with the rules and reasons in .sqlfluff (PL/pgSQL bodies are
    string literals to sqlfluff, so they are not linted)."""
    files = sorted(str(path.relative_to(ROOT)) for path in ROOT.glob("*/migrations/versions/*.sql"))
    assert files, "no migration SQL found"
    result = _run("sqlfluff", "lint", "--nocolor", "--disable-progress-bar", *files)
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


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_the_project_scripts_are_shellcheck_clean() -> None:
    """scripts/ and .ci/run (the hook has its own test beside it, the backup script too)."""
    scripts = [path for path in [*sorted((ROOT / "scripts").iterdir()), ROOT / ".ci" / "run"]
               if path.read_text(encoding="utf-8").startswith("#!/usr/bin/env bash\n")]
    assert ROOT / "scripts" / "test" in scripts
    result = subprocess.run(["shellcheck", *map(str, scripts)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_packages_import_only_what_the_conventions_allow() -> None:
    ours = {*ALLOWED, "gpuledger"}
    wrong = [(str(path.relative_to(ROOT)), sorted(bad))
             for package, allowed in ALLOWED.items() for path in sorted((ROOT / package).rglob("*.py"))
             if (bad := (_imported(path) & ours) - allowed - {package})]
    assert wrong == []


# -- the same rule on SQL: a package's SQL names only its own schema and what another package publishes ------------

SCHEMAS = ("ledger", "control", "collector", "api")
# The schema each package owns (probe owns none: it runs on the nodes and has no database).
OWN_SCHEMA = {"ledger": "ledger", "control": "control", "collector": "collector", "api": "api", "probe": None}
# The ledger publishes Python (ledger.service, ledger.browse, ledger.usage, ledger.directory, ledger.reports) and
# two SQL functions others may call (migration 0006): ledger.closed_before(), the newest period close (the
# controller's outbox read), and ledger.billing_users(pairs), who a Linux user bills to. Its tables are its own
# to change, their invariants kept by its functions and triggers. A view or function added for other packages
# goes here, with its documentation.
LEDGER_PUBLISHED = frozenset({"ledger.closed_before", "ledger.billing_users"})
# The collector's read-only status views (collector migrations c0004, c0005), for the API's node, decision,
# health and console pages: what the controller learned, without the API depending on its table layout.
COLLECTOR_PUBLISHED = frozenset({"collector.node_status", "collector.gpu_status", "collector.decision_log",
                                 "collector.tick_status", "collector.gpu_activity"})
# What each package's SQL may name besides its own schema: only what packages it may import publish.
PUBLISHED_TO = {"ledger": frozenset(), "control": LEDGER_PUBLISHED, "collector": LEDGER_PUBLISHED,
                "api": LEDGER_PUBLISHED | COLLECTOR_PUBLISHED, "probe": frozenset()}
# Named places that must name another schema's objects, each with its reason.
EXCEPTIONS = {
    # The move itself: control0001 takes the api chain's three tables into schema control.
    "control/migrations/versions/0001_control.sql": frozenset(
        {"api.settings_version", "api.enforcement_override", "api.connection_test"}),
}
_SQL_REFERENCE = re.compile(rf"\b(?:FROM|JOIN|INTO|UPDATE)\s+((?:{'|'.join(SCHEMAS)})\.\w+)", re.IGNORECASE)
# A migration also alters, drops or truncates tables by name.
_TABLE_REFERENCE = re.compile(rf"\bTABLE\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?((?:{'|'.join(SCHEMAS)})\.\w+)",
                              re.IGNORECASE)


def _sql_text(path: Path, source: str) -> list[str]:
    """The SQL ``source`` (the text of ``path``) can run: a .sql file without its comments; in a .py file, its
    string literals (f-strings' literal parts too) except docstrings, which are prose."""
    if path.suffix == ".sql":
        return [re.sub(r"--[^\n]*", "", source)]
    tree = ast.parse(source)
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def sql_references(path: Path, source: str) -> set[str]:
    """The ``schema.object`` names the SQL in ``source`` reads or writes."""
    patterns = [_SQL_REFERENCE] + ([_TABLE_REFERENCE] if "migrations" in path.parts else [])
    return {m.group(1).lower() for sql in _sql_text(path, source) for p in patterns for m in p.finditer(sql)}


def foreign_references(package: str, relative: str, source: str) -> set[str]:
    """What the SQL of ``relative`` (a file of ``package``) names that the rule does not allow it."""
    own = OWN_SCHEMA[package]
    allowed = PUBLISHED_TO[package] | EXCEPTIONS.get(relative, frozenset())
    return {name for name in sql_references(Path(relative), source)
            if name.split(".")[0] != own and name not in allowed}


def _package_sources() -> list[tuple[str, str, str]]:
    return [(package, str(path.relative_to(ROOT)), path.read_text(encoding="utf-8"))
            for package in OWN_SCHEMA for path in sorted((ROOT / package).rglob("*"))
            if path.suffix in (".py", ".sql") and "__pycache__" not in path.parts]


def test_packages_sql_names_only_their_own_schema_and_what_is_published() -> None:
    wrong = {relative: sorted(bad) for package, relative, source in _package_sources()
             if (bad := foreign_references(package, relative, source))}
    assert wrong == {}


def test_every_exception_is_still_needed() -> None:
    sources = {relative: source for _, relative, source in _package_sources()}
    stale = {relative: sorted(names - sql_references(Path(relative), sources.get(relative, "")))
             for relative, names in EXCEPTIONS.items()}
    assert {k: v for k, v in stale.items() if v} == {}


def test_the_sql_guard_finds_a_door() -> None:
    """The scanner on literal snippets: the API writing the collector's registry, reading a table behind a
    published view, and a migration altering another schema's table are found; prose and published views
    are not."""
    handler = '''"""Reads FROM collector.node, in prose only."""
def edit(conn):
    # UPDATE collector.node in a comment is no SQL
    conn.execute(text("UPDATE collector.node SET region = :r WHERE name = :n"))
    conn.execute(text(f"SELECT {COLUMNS} FROM collector.node_status WHERE name = :n"))
    return conn.execute(text("SELECT count(*) FROM control.node_edit JOIN collector.gpu g ON true"))
'''
    assert foreign_references("api", "api/handlers/example.py", handler) == {
        "collector.node", "control.node_edit", "collector.gpu"}
    migration = "-- ALTER TABLE api.token in a comment\nALTER TABLE ledger.usage ADD COLUMN x int;\n"
    assert foreign_references("collector", "collector/migrations/versions/0009_x.sql", migration) == {"ledger.usage"}
    assert foreign_references("ledger", "ledger/migrations/versions/0009_x.sql", migration) == set()
