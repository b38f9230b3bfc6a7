"""The node role (playbooks/nodes.yml) on a real systemd / cgroup v2 node: converges, then changes nothing.

The node is the session's guest, converged once by the ``converged`` fixture (tests/vm/role.py, tests/vm/conftest.py);
the metering and enforcement tests use the node command this run installed.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.rollout.lab import Recap
from tests.vm.role import RoleRun
from tests.vm.workload import TEST_UID, USERS, cron_job

pytestmark = [pytest.mark.vm, pytest.mark.timeout(1800)]


def test_nodes_playbook_converges_on_a_systemd_node(converged: Recap, role_run: RoleRun) -> None:
    assert converged.hosts[role_run.node.name]["failed"] == 0
    assert converged.hosts[role_run.node.name]["changed"] > 0
    node = role_run.node
    # The controller pinned the key the node itself published, which is the one the lab seeded.
    known = (role_run.controller_dir / "ssh" / "known_hosts").read_text()
    assert f"[127.0.0.1]:{node.port} {node.host_public_key}" in known
    # The production path: the controller's key, the gpuledger account's forced command, sudo, the node command.
    sample = node.ssh("gpuledger", "sample", key=role_run.controller_key)
    assert json.loads(sample.stdout)["schema_version"] >= 1
    quota = json.loads(node.ssh("gpuledger", "quota-get 1000", key=role_run.controller_key).stdout)
    assert quota["backend"] == "systemd", quota


def test_a_second_run_changes_nothing(converged: Recap, role_run: RoleRun) -> None:
    again = role_run.playbook()
    assert again.rc == 0, again.explain()
    assert again.hosts[role_run.node.name]["changed"] == 0, again.explain()


def test_check_diff_is_clean(converged: Recap, role_run: RoleRun) -> None:
    check = role_run.playbook("--check", "--diff")
    assert check.rc == 0, check.explain()
    assert check.total("changed") == 0, check.explain()


def test_after_the_role_a_limited_users_cron_job_runs_in_the_users_slice(converged: Recap, role_run: RoleRun) -> None:
    """The role gives /etc/pam.d/cron a logind session (gpuledger_node_logind_pam_services): a blocked user's cron
    job is held by the slice's CPUQuota and device policy like an ssh session, instead of running in cron.service."""
    node, key = role_run.node, role_run.controller_key
    assert node.ssh("root", "tail -n 1 /etc/pam.d/cron").stdout.strip() == "session optional pam_systemd.so"
    limited = json.loads(node.ssh("gpuledger", f"quota-set {TEST_UID} 100000", key=key).stdout)
    assert limited["ok"] is True, limited
    try:
        with cron_job(node, USERS[TEST_UID]) as placed:
            quota = json.loads(node.ssh("gpuledger", f"quota-get {TEST_UID}", key=key).stdout)
    finally:
        node.ssh("gpuledger", f"quota-clear {TEST_UID}", key=key)
    assert re.fullmatch(rf"/user\.slice/user-{TEST_UID}\.slice/session-c?\d+\.scope", placed), placed
    assert quota["outside"] == 0, quota
