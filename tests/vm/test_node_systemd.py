"""The probe on a real systemd / cgroup v2 node: what it reports, and the systemd backend's CPU quota enforced.

The guest is Debian 12 (tests/harness/vm.py): systemd 252 as PID 1, only the unified hierarchy, every SSH login in
``user-UID.slice/session-N.scope`` by pam_systemd. Nothing here can run on the host, which has neither.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.harness.vm import VmNode
from tests.vm.install import node_command
from tests.vm.workload import CONTROL_UID, TEST_UID, USERS, busy_sessions, verb, window

# Image build (first session on a machine, a few minutes) and boot happen in the first test's setup.
pytestmark = [pytest.mark.vm, pytest.mark.timeout(1800)]


def test_the_guest_is_systemd_on_cgroup_v2_with_logind_sessions(vm_node: VmNode) -> None:
    assert vm_node.ssh("root", "stat -fc %T /sys/fs/cgroup").stdout.strip() == "cgroup2fs"
    assert vm_node.ssh("root", "readlink /proc/1/exe").stdout.strip() == "/usr/lib/systemd/systemd"
    cgroup = vm_node.ssh("gltest", "cat /proc/self/cgroup").stdout.strip()
    assert re.fullmatch(r"0::/user\.slice/user-1000\.slice/session-\d+\.scope", cgroup), cgroup


def test_the_host_key_is_the_nodes_own_and_pinned(vm_node: VmNode) -> None:
    offered = vm_node.ssh("root", "cat /etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[:2]
    assert " ".join(offered) == vm_node.host_public_key
    assert vm_node.ssh("root", "ls /etc/ssh").stdout.count("ssh_host_") == 2


def test_sample_over_ssh_reads_the_user_slices_of_cgroup_v2(probe_node: VmNode) -> None:
    with busy_sessions(probe_node, 60):
        sample = json.loads(node_command(probe_node, "sample").stdout)
    rows = {row["uid"]: row for row in sample["user_cpu"]}
    for uid, user in USERS.items():
        assert rows[uid]["source"] == "cgroup-v2"
        assert rows[uid]["user"] == user
        assert rows[uid]["usage_ns"] > 0 and rows[uid]["usage_ns"] % 1000 == 0
    assert "user_cpu" not in {entry["source"] for entry in sample["degraded"]}


def test_quota_set_throttles_a_new_session_through_the_slice_and_clear_lifts_it(probe_node: VmNode) -> None:
    # 20 % of the node's one CPU: CPUQuota=20% on user-1000.slice, via systemctl set-property --runtime.
    applied = verb(probe_node, f"quota-set {TEST_UID} 200000")
    assert applied["backend"] == "systemd"
    assert verb(probe_node, f"quota-get {TEST_UID}")["quota_ppm"] == 200000
    show = probe_node.ssh("root", f"systemctl show -p CPUQuotaPerSecUSec user-{TEST_UID}.slice").stdout.strip()
    assert show == "CPUQuotaPerSecUSec=200ms"
    try:
        with busy_sessions(probe_node, 90):
            limited = window(probe_node, 15)
    finally:
        cleared = verb(probe_node, f"quota-clear {TEST_UID}")
    # The two loops ran side by side for the same seconds: the quota holds the test user well under the control.
    assert limited[TEST_UID]["nr_throttled"] > 0
    assert limited[TEST_UID]["usage_usec"] * 2 < limited[CONTROL_UID]["usage_usec"], limited
    assert cleared["backend"] == "systemd"
    assert verb(probe_node, f"quota-get {TEST_UID}")["quota_ppm"] is None
    with busy_sessions(probe_node, 90):
        free = window(probe_node, 15)
    assert free[TEST_UID].get("nr_throttled", 0) == 0
    # Lifted: the two loops share the CPU again (the scheduler splits it about evenly; half is a wide margin).
    assert free[TEST_UID]["usage_usec"] * 2 > free[CONTROL_UID]["usage_usec"], free


OPEN_NVIDIA0 = (
    "python3 -c \"import errno, os\ntry:\n    os.close(os.open('/dev/nvidia0', os.O_RDWR)); print('opened')\n"
    "except OSError as e:\n    print(errno.errorcode[e.errno])\""
)


def test_gpu_block_closes_an_nvidia_device_to_the_users_new_session_and_unblock_opens_it(probe_node: VmNode) -> None:
    # The guest has no NVIDIA driver: a 195:0 node opens with ENXIO where the device policy lets it through, EPERM
    # where the slice's device program refuses it. The control user is never blocked.
    probe_node.ssh("root", "mknod -m 0666 /dev/nvidia0 c 195 0")
    try:
        blocked = verb(probe_node, f"gpu-block {TEST_UID}")
        try:
            assert blocked["backend"] == "systemd" and blocked["after"]["blocked"] is True, blocked
            held = {uid: probe_node.ssh(user, OPEN_NVIDIA0, fresh=True).stdout.strip() for uid, user in USERS.items()}
        finally:
            unblocked = verb(probe_node, f"gpu-unblock {TEST_UID}")
        assert held == {TEST_UID: "EPERM", CONTROL_UID: "ENXIO"}, held
        assert unblocked["after"]["blocked"] is False, unblocked
        assert probe_node.ssh(USERS[TEST_UID], OPEN_NVIDIA0, fresh=True).stdout.strip() == "ENXIO"
    finally:
        probe_node.ssh("root", "rm -f /dev/nvidia0")
