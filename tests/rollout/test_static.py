"""Checks that need no lab: argument specs against defaults, ansible-lint at the production profile, the inventories."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.rollout.lab import REPO, VENV_BIN

ROLES = sorted(path.parent.parent for path in (REPO / "roles").glob("*/meta/argument_specs.yml"))
GPU_GROUPS = {"gpu_a100_80g", "gpu_h100", "gpu_v100", "gpu_rtx3090", "gpu_rtx4090", "cpu_only"}


def test_every_role_has_argument_specs() -> None:
    assert [role.name for role in ROLES] == ["gpuledger_controller", "gpuledger_db", "gpuledger_node"]


@pytest.mark.parametrize("role", ROLES, ids=lambda role: role.name)
def test_argument_specs_match_defaults(role: Path) -> None:
    """The main entry point documents exactly the defaults, with the same values; other entry points use a subset."""
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text())
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    main = specs["main"]["options"]
    assert list(main) == list(defaults), "options and defaults differ in names or order"
    for name, option in main.items():
        assert option.get("default") == defaults[name], name
        assert option.get("description"), name
        assert name.startswith(role.name + "_"), name
    for entry, spec in specs.items():
        for name, option in spec.get("options", {}).items():
            assert option == main[name], f"{entry}: {name} differs from the main entry point"


def _lint_environment(tmp_path: Path) -> dict[str, str]:
    return {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": str(tmp_path), "ANSIBLE_HOME": str(tmp_path / "ansible"),
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "NO_COLOR": "1"}


@pytest.mark.slow
def test_ansible_lint_production_profile_passes(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(VENV_BIN / "ansible-lint"), "--offline", "--profile", "production", "roles", "playbooks", "inventory"],
        cwd=REPO, env=_lint_environment(tmp_path), capture_output=True, text=True, timeout=280,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _inventory(name: str, tmp_path: Path) -> dict[str, dict[str, list[str]]]:
    result = subprocess.run([str(VENV_BIN / "ansible-inventory"), "-i", str(REPO / "inventory" / name), "--list"],
                            cwd=REPO, env=_lint_environment(tmp_path), capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def _hosts(listing: dict[str, dict[str, list[str]]], group: str) -> set[str]:
    entry = listing.get(group, {})
    found = set(entry.get("hosts", []))
    for child in entry.get("children", []):
        found |= _hosts(listing, child)
    return found


def test_example_inventory_is_a_24_node_lab_grouped_by_gpu_model(tmp_path: Path) -> None:
    listing = _inventory("example", tmp_path)
    nodes = _hosts(listing, "gpuledger_nodes")
    assert len(nodes) == 24
    for node in nodes:
        assert len([group for group in GPU_GROUPS if node in _hosts(listing, group)]) == 1, node
    pilot = _hosts(listing, "gpuledger_pilot")
    assert 2 <= len(pilot) <= 3 and pilot < nodes
    assert len({model for model in GPU_GROUPS if pilot & _hosts(listing, model)}) == len(pilot)
    assert _hosts(listing, "gpuledger_controller") and _hosts(listing, "gpuledger_db")
    assert not nodes & _hosts(listing, "gpuledger_controller")


def test_test_inventory_has_the_groups_the_playbooks_use(tmp_path: Path) -> None:
    listing = _inventory("test", tmp_path)
    assert _hosts(listing, "gpuledger_nodes") == {"node-a", "node-b"}
    assert _hosts(listing, "gpuledger_controller") == _hosts(listing, "gpuledger_db") == {"controller-1"}


def test_role_readmes_are_generated_from_the_specs_and_tags() -> None:
    result = subprocess.run([str(VENV_BIN / "python"), str(REPO / "scripts" / "role-docs"), "--check"],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_role_docs_check_reports_a_stale_readme(tmp_path: Path) -> None:
    """The drift test can fail: a copy of the roles with one README changed is reported, with the diff."""
    roles = tmp_path / "repo" / "roles"
    shutil.copytree(REPO / "roles", roles)
    script = tmp_path / "repo" / "scripts" / "role-docs"
    script.parent.mkdir()
    shutil.copy2(REPO / "scripts" / "role-docs", script)
    readme = roles / "gpuledger_db" / "README.md"
    readme.write_text(readme.read_text().replace("| `gpuledger_db_name` | str | `gpuledger` |",
                                                 "| `gpuledger_db_name` | str | `ledger` |"))
    result = subprocess.run([str(VENV_BIN / "python"), str(script), "--check"], capture_output=True, text=True)
    assert result.returncode == 1
    assert "+| `gpuledger_db_name` | str | `gpuledger` |" in result.stdout, result.stdout


def _tasks(tasks: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for task in tasks or []:
        yield task
        for key in ("block", "rescue", "always"):
            yield from _tasks(task.get(key, []))


def _task_files() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted([*(REPO / "roles").glob("*/tasks/*.yml"), *(REPO / "playbooks").glob("*.yml")]):
        document = yaml.safe_load(path.read_text()) or []
        plays = [play for play in document if "tasks" in play] if path.parent.name == "playbooks" else [
            {"tasks": document}]
        for play in plays:
            for task in _tasks(play["tasks"]):
                yield path, task


def test_every_include_applies_its_tags_to_what_it_includes() -> None:
    """An include without apply: its tags select the include statement only, not the tasks it brings in."""
    for path, task in _task_files():
        for module in ("ansible.builtin.include_tasks", "ansible.builtin.include_role"):
            if module in task and path.name != "remove-node.yml":  # retirement runs whole, with no tags
                arguments = task[module]
                assert isinstance(arguments, dict) and arguments.get("apply", {}).get("tags"), (path, task["name"])
                assert set(arguments["apply"]["tags"]) <= set(task.get("tags", [])), (path, task["name"])


def test_the_tags_in_use_are_the_documented_ones() -> None:
    documented = {tag for role in ROLES for tag in yaml.safe_load((role / "meta" / "tags.yml").read_text())}
    used = {tag for _, task in _task_files() for tag in task.get("tags", [])} - {"always"}
    assert used == documented
    for role in ROLES:
        for tag, entry in yaml.safe_load((role / "meta" / "tags.yml").read_text()).items():
            assert tag.startswith(role.name), tag
            assert entry["description"] and entry["files"], tag
            for name in entry["files"]:
                assert (role / "tasks" / name).is_file(), (tag, name)
