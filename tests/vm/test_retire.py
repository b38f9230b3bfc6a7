"""``playbooks/remove-node.yml`` on the session's converged VM node: it leaves nothing of gpuledger behind.

It runs last among the VM tests (pytest takes the modules in name order, and this one sorts after the others),
since it removes what they use.
"""

from __future__ import annotations

import json

import pytest

from tests.rollout.lab import Recap
from tests.vm.role import RoleRun

pytestmark = [pytest.mark.vm, pytest.mark.timeout(1800)]
UID = 1000
LEFT_BEHIND = (
    "/opt/gpuledger", "/etc/gpuledger/node.json", "/run/gpuledger/status", "/etc/ssh/sshd_config.d/50-gpuledger.conf",
    "/etc/sudoers.d/gpuledger", "/etc/profile.d/gpuledger.sh", "/usr/local/bin/gpuledger-balance", "/var/lib/gpuledger",
)


def test_remove_node_leaves_the_node_clean(converged: Recap, role_run: RoleRun) -> None:
    node = role_run.node
    # Something to lift: a quota and a GPU block, as a blocked user has.
    for words in (f"quota-set {UID} 100000", f"gpu-block {UID}"):
        document = json.loads(node.ssh("gpuledger", words, key=role_run.controller_key).stdout)
        assert document["ok"] is True, document
    retired = role_run.playbook("-e", f"gpuledger_retire={node.name}", playbook="remove-node.yml")
    assert retired.rc == 0, retired.explain()
    present = node.ssh("root", "ls -d " + " ".join(LEFT_BEHIND) + " 2>/dev/null; true").stdout.split()
    assert present == [], present
    assert node.ssh("root", "getent passwd gpuledger", check=False).returncode == 2
    assert node.ssh("root", "grep -l gpuledger /etc/pam.d/* /etc/bash.bashrc; true").stdout == ""
    assert node.ssh("root", "grep -c pam_systemd /etc/pam.d/cron; true").stdout.strip() == "0"  # Debian's own again
    slice_state = node.ssh("root", f"systemctl show -p CPUQuotaPerSecUSec -p DevicePolicy user-{UID}.slice").stdout
    assert slice_state.split() == ["CPUQuotaPerSecUSec=infinity", "DevicePolicy=auto"], slice_state
    # The controller forgot the node: no pinned key left in its known_hosts.
    assert f"{node.port}" not in (role_run.controller_dir / "ssh" / "known_hosts").read_text()
    # The controller's key no longer logs in.
    assert node.ssh("gpuledger", "version", key=role_run.controller_key, check=False).returncode != 0
