"""Each documented tag (roles/<role>/meta/tags.yml) runs its own tasks and no others, in real ansible-playbook runs.

``--list-tasks --tags X`` shows every task of a tag that is imported (static); the tasks that come in through an
include only appear when the include runs, so every tag that reaches an included file also gets a ``--check`` run on
the rolled-out lab. Either way the tasks listed or run must all come from the tag's task files, the include
statements carrying the tag and the tasks every run has (the variable checks), and each of the tag's files must have
contributed tasks unless the lab cannot run them (stated below). Two real runs then repair what a test broke, each
with one tag: only that part is put back. This module sorts before test_rollout.py, whose last test retires node-b.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.rollout.lab import INVENTORY, LAB_VARS, REPO, VENV_BIN, Lab, Recap

# The first test's setup is the whole first rollout (rolled_out), over 300 s on a busy two-core machine.
pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(900)]
ROLES = REPO / "roles"
LIMIT = "controller-1,node-a"
_TASK = re.compile(r"^TASK \[(?:(\w+) : )?(.+?)\] \**$", re.MULTILINE)
_LISTED = re.compile(r"^ {6}(?:(\w+) : )?(.+?)\tTAGS: ", re.MULTILINE)
# Task files the lab cannot run, and why: their include is skipped, so none of their tasks may appear.
NOT_IN_THE_LAB = {
    "accounting.yml": "the lab's nodes are CPU-only (gpuledger_node_gpu: false)",
    "server.yml": "the lab's database is an existing server (gpuledger_db_install_server: false)",
    "absent.yml": "the lab installs nodes (gpuledger_node_state: present)",
}


def _tasks(tasks: list[dict[str, Any]] | None) -> Iterator[dict[str, Any]]:
    for task in tasks or []:
        yield task
        for key in ("block", "rescue", "always"):
            yield from _tasks(task.get(key))


def _names(role: str, file: str) -> set[str]:
    return {task["name"] for task in _tasks(yaml.safe_load((ROLES / role / "tasks" / file).read_text()))}


def _documented() -> list[tuple[str, str, dict[str, Any]]]:
    return [(role.name, tag, entry) for role in sorted(ROLES.iterdir())
            for tag, entry in yaml.safe_load((role / "meta" / "tags.yml").read_text()).items()]


def _playbook_tasks() -> Iterator[dict[str, Any]]:
    for path in (REPO / "playbooks").glob("*.yml"):
        for play in yaml.safe_load(path.read_text()):
            yield from _tasks(play.get("tasks"))


def _playbook_includes(tag: str) -> set[tuple[str, str]]:
    """(role, task file) that the playbooks' include_role statements bring in for this tag."""
    found = set()
    for task in _playbook_tasks():
        include = task.get("ansible.builtin.include_role")
        if include and "tasks_from" in include and {tag, "always"} & set(task.get("tags", [])):
            found.add((include["name"], include["tasks_from"] + ".yml"))
    return found


def _allowed(role: str, tag: str, files: list[str]) -> dict[str, set[str]]:
    """Per role, the task names that may run with this tag."""
    allowed: dict[str, set[str]] = {path.name: _names(path.name, "preflight.yml") for path in ROLES.iterdir()}
    for file in files:
        allowed[role] |= _names(role, file)
    for other, file in _playbook_includes(tag):
        allowed[other] |= _names(other, file)
    # The playbooks' own tasks (the include_role statements) have no role in their name.
    allowed[""] = {task["name"] for task in _playbook_tasks() if {tag, "always"} & set(task.get("tags", []))}
    # Tasks named with the tag outside its files: the include statements, and the host-key facts of present.yml.
    for path in (ROLES / role / "tasks").glob("*.yml"):
        for task in _tasks(yaml.safe_load(path.read_text())):
            if tag in task.get("tags", []):
                allowed[role].add(task["name"])
    return allowed


def _included_files(role: str) -> set[str]:
    """The role's task files that only an include brings in (a templated name: every file it can name)."""
    found = set()
    for path in (ROLES / role / "tasks").glob("*.yml"):
        for task in _tasks(yaml.safe_load(path.read_text())):
            include = task.get("ansible.builtin.include_tasks")
            if include:
                name = include["file"] if isinstance(include, dict) else include
                found |= {"present.yml", "absent.yml"} if "{{" in name else {name}
    return found


def _through_includes(role: str, files: list[str]) -> bool:
    return bool(set(files) & _included_files(role))


def _ran(recap: Recap) -> dict[str, set[str]]:
    ran: dict[str, set[str]] = {}
    for role, name in _TASK.findall(recap.output) + _LISTED.findall(recap.output):
        if not name.startswith("Validating arguments against arg spec"):  # Ansible's own check, tagged always
            ran.setdefault(role or "", set()).add(name)
    return ran


def _check_selection(ran: dict[str, set[str]], role: str, tag: str, files: list[str], listed: bool,
                     recap: Recap) -> None:
    allowed = _allowed(role, tag, files)
    for other, names in ran.items():
        assert names <= allowed.get(other, set()), f"--tags {tag} ran {sorted(names - allowed.get(other, set()))}"
    for file in files:
        contributed = ran.get(role, set()) & (_names(role, file) - _names(role, "preflight.yml"))
        if listed:
            # --list-tasks shows an include statement, not what it brings in.
            assert contributed or file in _included_files(role), f"--tags {tag} lists none of tasks/{file}"
        elif file in NOT_IN_THE_LAB:
            assert not contributed, f"{file} is not for the lab ({NOT_IN_THE_LAB[file]}) yet ran {contributed}"
        else:
            assert contributed, f"--tags {tag} ran none of tasks/{file}\n{recap.explain()}"


DOCUMENTED = _documented()


@pytest.mark.parametrize(("role", "tag", "entry"), DOCUMENTED, ids=[tag for _, tag, _ in DOCUMENTED])
def test_list_tasks_of_a_tag_holds_its_tasks_and_nothing_else(tmp_path: Path, role: str, tag: str,
                                                              entry: dict[str, Any]) -> None:
    # Listing connects to nothing: the test inventory's lookups need only the lab's root to name paths under.
    env = {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": str(tmp_path), "ANSIBLE_HOME": str(tmp_path / "ansible"),
           "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "GLA_ROOT": str(tmp_path)}
    result = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", str(INVENTORY), "-e", f"@{LAB_VARS}",
                             str(REPO / "playbooks" / "site.yml"), "--list-tasks", "--tags", tag],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=280, stdin=subprocess.DEVNULL)
    recap = Recap(result.returncode, result.stdout + result.stderr, {})
    assert recap.rc == 0, recap.explain()
    _check_selection(_ran(recap), role, tag, entry["files"], True, recap)


@pytest.mark.parametrize(("role", "tag", "entry"),
                         [case for case in DOCUMENTED if _through_includes(case[0], case[2]["files"])],
                         ids=[tag for role, tag, entry in DOCUMENTED if _through_includes(role, entry["files"])])
def test_a_tag_runs_its_included_tasks_and_nothing_else(lab: Lab, rolled_out: Recap, role: str, tag: str,
                                                        entry: dict[str, Any]) -> None:
    recap = lab.playbook("site.yml", "--check", "--tags", tag, "--limit", LIMIT)
    assert recap.rc == 0 and recap.total("failed") == 0, recap.explain()
    assert recap.total("changed") == 0, recap.explain()
    _check_selection(_ran(recap), role, tag, entry["files"], False, recap)


def _changed_tasks(recap: Recap, host: str) -> list[str]:
    """The tasks that reported "changed: [host]", in order."""
    changed, current = [], ""
    for line in recap.output.splitlines():
        if line.startswith("TASK ["):
            current = line
        elif line.startswith(f"changed: [{host}]"):
            changed.append(current)
    return changed


def test_a_tagged_run_repairs_only_its_part(lab: Lab, rolled_out: Recap) -> None:
    """Break the login hook and the node config on node-a: --tags gpuledger_node_hook puts back the hook only,
    then --tags gpuledger_node_install the config."""
    etc = lab.node_root("node-a") / "etc"
    hook, config = etc / "profile.d" / "gpuledger.sh", etc / "gpuledger" / "node.json"
    hook_text, config_text = hook.read_text(), config.read_text()
    try:
        hook.write_text("# broken\n")
        config.write_text("{}\n")
        recap = lab.playbook("nodes.yml", "--tags", "gpuledger_node_hook", "--limit", LIMIT)
        assert recap.rc == 0, recap.explain()
        assert hook.read_text() == hook_text and config.read_text() == "{}\n"
        changed = _changed_tasks(recap, "node-a")
        assert changed and all("Install the login hook" in task for task in changed), recap.explain()
        assert recap.total("changed") == 1, recap.explain()

        recap = lab.playbook("nodes.yml", "--tags", "gpuledger_node_install", "--limit", LIMIT)
        assert recap.rc == 0, recap.explain()
        assert config.read_text() == config_text
        changed = _changed_tasks(recap, "node-a")
        assert changed and all("Write the node config" in task for task in changed), recap.explain()
        assert recap.total("changed") == 1, recap.explain()
    finally:
        for path, text in ((hook, hook_text), (config, config_text)):
            if path.read_text() != text:
                path.write_text(text)


def test_the_db_backup_tag_rewrites_a_removed_timer(lab: Lab, rolled_out: Recap) -> None:
    timer = lab.root / "controller" / "etc" / "systemd" / "system" / "gpuledger-db-backup.timer"
    text = timer.read_text()
    timer.unlink()
    try:
        recap = lab.playbook("db.yml", "--tags", "gpuledger_db_backup")
        assert recap.rc == 0, recap.explain()
        assert timer.read_text() == text
        assert recap.total("changed") == 1 and all(
            "Install the backup service and timer" in task for task in _changed_tasks(recap, "controller-1")), \
            recap.explain()
    finally:
        if not timer.exists():
            timer.write_text(text)
