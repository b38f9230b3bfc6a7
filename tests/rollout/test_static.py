"""Checks that need no lab: argument specs against defaults, ansible-lint at the production profile, the inventories."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

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
