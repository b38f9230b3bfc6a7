"""The login hook and ``gpuledger-balance`` as the node role installed them, in a real login shell on the VM node.

The status file arrives the production way: ``status-write`` over the controller's key, the ``gpuledger``
account's forced command and sudo (docs/status-file.md). The shell is the user's own: sshd on the guest starts
bash as a login shell on a terminal, which reads /etc/profile (and so /etc/profile.d/gpuledger.sh).
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.rollout.lab import Recap
from tests.vm.role import RoleRun

pytestmark = [pytest.mark.vm, pytest.mark.timeout(1800)]
UID, USER = 1000, "gltest"
BANNER = "gpuledger: balance 8.42 CNY, tier warning"
NOTICE = "Notice: Your balance is below 10 CNY."


@pytest.fixture(scope="module")
def warned(converged: Recap, role_run: RoleRun) -> RoleRun:
    node = role_run.node
    # The hook calls a file older than 300 s stale: the guest's clock is the one that counts.
    now = int(node.ssh("root", "date +%s").stdout)
    document = {
        "version": 1, "user": USER, "uid": UID, "billing_user": USER, "updated_at": now, "tier": "warning",
        "balance": "8.420000", "currency": "CNY", "burn_rate_per_hour": "1.200000", "time_to_empty_hours": "7.0",
        "gpu_blocked": False, "cpu_quota_percent": None, "kill_at": None, "notice": "Your balance is below 10 CNY.",
        "recharge_hint": "Ask your PI or write to gpu-admin@lab.example to recharge.",
    }
    written = json.loads(node.ssh("gpuledger", f"status-write {UID}", key=role_run.controller_key,
                                  stdin=json.dumps(document).encode()).stdout)
    assert written["ok"] is True, written
    return role_run


def test_the_banner_shows_in_a_real_login_shell(warned: RoleRun) -> None:
    node = warned.node
    # No command: sshd runs the user's shell as a login shell on a terminal (-tt), which reads the input line.
    argv = ["ssh", *node.ssh_options(), "-o", "ControlPath=none", "-tt", "-p", str(node.port), f"{USER}@127.0.0.1"]
    login = subprocess.run(argv, input="exit\n", capture_output=True, text=True, timeout=120)
    assert login.returncode == 0, login.stdout + login.stderr
    lines = [line.strip() for line in login.stdout.splitlines()]
    assert BANNER in lines and NOTICE in lines, login.stdout


def test_a_non_interactive_command_prints_nothing(warned: RoleRun) -> None:
    assert warned.node.ssh(USER, "true", fresh=True).stdout == ""


def test_gpuledger_balance_shows_the_same_standing(warned: RoleRun) -> None:
    shown = warned.node.ssh(USER, "gpuledger-balance").stdout.splitlines()
    assert shown[0] == BANNER and f"  {NOTICE}" in shown, shown
