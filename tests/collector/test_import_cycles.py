"""No import cycle among the collector's modules, counting imports under ``TYPE_CHECKING`` and inside functions.

A cycle hidden behind ``TYPE_CHECKING`` still ties two modules together (``collector/metrics.py`` and
``collector/tick.py`` once did): neither can be read, moved or tested without the other. The graph is
read from the source with ``ast``, so it sees every import statement whether or not it runs.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _module_name(root: Path, path: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(root: Path, path: Path, modules: set[str]) -> set[str]:
    """The modules of ``modules`` that ``path`` imports, with the packages importing them runs first."""
    name = _module_name(root, path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets.add(base)
            # ``from collector.charging import retention`` imports the module collector.charging.retention.
            targets.update(f"{base}.{alias.name}" for alias in node.names)
    found: set[str] = set()
    for target in targets:
        parts = target.split(".")
        found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return (found & modules) - {name}


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """module -> the modules of ``package`` it imports, for every module of ``package`` under ``root``."""
    paths = sorted((root / package).rglob("*.py"))
    modules = {_module_name(root, p) for p in paths}
    return {_module_name(root, p): _imports(root, p, modules) for p in paths}


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """One cycle (as the path that closes it) per strongly connected group of modules that has one."""
    found: list[list[str]] = []
    state: dict[str, str] = {}  # "open" while on the current path, "done" once fully explored

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                found.append([*path[path.index(target):], target])
            elif target not in state:
                visit(target, path)
        path.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    return found


def test_the_collector_has_no_import_cycle() -> None:
    graph = import_graph(ROOT, "collector")
    assert "collector.enforcing.converge" in graph["collector.tick"], "the graph was not read"
    assert cycles(graph) == []


def test_a_cycle_behind_type_checking_is_found(tmp_path: Path) -> None:
    """The check itself can fail: the metrics/tick loop as it was is reported, and so is one through a
    relative import and a package's module imported by ``from package import module``."""
    package = tmp_path / "collector"
    (package / "charging").mkdir(parents=True)
    for path, source in {
        "__init__.py": "",
        "metrics.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from collector.tick import Summary\n",
        "tick.py": "from collector.metrics import Metrics\nfrom collector import types\n",
        "types.py": "def f():\n    from .charging import batcher\n",
        "charging/__init__.py": "",
        "charging/batcher.py": "import collector.types\n",
    }.items():
        (package / path).write_text(source)
    graph = import_graph(tmp_path, "collector")
    assert graph["collector.tick"] == {"collector", "collector.metrics", "collector.types"}
    assert cycles(graph) == [
        ["collector.charging.batcher", "collector.types", "collector.charging.batcher"],
        ["collector.metrics", "collector.tick", "collector.metrics"],
    ]
