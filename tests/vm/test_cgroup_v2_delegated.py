"""The cgroup-v2 backend itself on a real kernel: a subtree that systemd delegates, as a container's root is.

On a systemd host the probe takes the systemd backend; the cgroup-v2 backend is for nodes without systemd, where the
probe owns the cgroup tree. Its stand-in here is a service started with ``Delegate=yes``: systemd hands the service's
cgroup and every controller to whatever runs there and never touches what is below it, just as a container gets
its cgroup namespace's root. Unlike the hierarchy's own root (the only kind fixtures showed), such a cgroup may not
hold processes while it gives ``cpu`` to its children ("no internal processes", cgroup-v2.rst): the backend first
moves them into ``<root>/gpuledger-rest``. The driver calls ``backends.detect`` with the node's config pointed at the
subtree and systemd's marker directory pointed away, so the probe chooses the backend the way it does on such a node.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.harness.vm import VmNode
from tests.vm.install import PREFIX
from tests.vm.workload import CONTROL_UID, TEST_UID, USERS, busy_sessions, window

pytestmark = [pytest.mark.vm, pytest.mark.timeout(1800)]
UNIT = "gpuledger-v2.service"
ROOT = f"/sys/fs/cgroup/system.slice/{UNIT}"
REST = f"{ROOT}/gpuledger-rest"
GROUP = f"{ROOT}/gpuledger/user-{TEST_UID}"
DRIVER_PATH = "/root/gl-v2-driver.py"
# quota-get / quota-set / quota-clear of docs/node-command.md, through the backend detect() picks for this root.
DRIVER = f"""
import json, sys
sys.path.insert(0, "{PREFIX}/lib")
from probe import backends, config, plan
backend = backends.detect(config.from_mapping({{"cgroup_root": sys.argv[1]}}), systemd_run_dir="/nonexistent")
uid, what = int(sys.argv[2]), sys.argv[3]
actions = []
if what != "get":
    before = backend.observe_quota(uid)
    actions = plan.execute(backend.plan_quota(uid, None if what == "clear" else int(what), before))
after = backend.observe_quota(uid)
print(json.dumps({{"backend": backend.name, "actions": actions, "quota_ppm": after.quota_ppm, "raw": after.raw,
                  "outside": after.outside}}))
"""


def drive(node: VmNode, what: str) -> dict[str, Any]:
    result = node.ssh("root", f"python3 -I {DRIVER_PATH} {ROOT} {TEST_UID} {what}")
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def procs(node: VmNode, group: str) -> set[int]:
    return {int(word) for word in node.ssh("root", f"cat {group}/cgroup.procs").stdout.split()}


@pytest.fixture
def delegated(probe_node: VmNode) -> Iterator[VmNode]:
    """The unit's cgroup with one keeper process in it; afterwards every process of the test user that the backend
    moved (its systemd user manager, the ssh master's session) goes back to the cgroup it came from, and stopping
    the unit removes the subtree."""
    node = probe_node
    node.ssh("root", f"cat > {DRIVER_PATH}", stdin=DRIVER.encode())
    node.ssh("root", f"systemd-run --quiet --unit={UNIT} --property=Delegate=yes sleep infinity")
    listing = node.ssh("root", f"for p in $(pgrep -u {TEST_UID}); do echo $p $(cut -d: -f3- /proc/$p/cgroup); done",
                       check=False).stdout
    origins = [line.split(" ", 1) for line in listing.splitlines() if " /" in line]
    try:
        yield node
    finally:
        back = "; ".join(f"echo {pid} > {shlex.quote('/sys/fs/cgroup' + path + '/cgroup.procs')}"
                         for pid, path in origins)
        node.ssh("root", f"{back or 'true'}; systemctl stop {UNIT}; true", check=False)
        node.ssh("root", f"rm -f {DRIVER_PATH}", check=False)


def test_the_v2_backend_limits_and_lifts_a_user_on_a_delegated_subtree(delegated: VmNode) -> None:
    node = delegated
    (keeper,) = procs(node, ROOT)
    assert "cpu" in node.ssh("root", f"cat {ROOT}/cgroup.controllers").stdout.split()
    assert node.ssh("root", f"cat {ROOT}/cgroup.subtree_control").stdout.split() == []
    with busy_sessions(node, 240):
        # 20 % of the node's one CPU: cpu.max 20000 100000 on the user's group, every process of the uid moved in.
        applied = drive(node, "200000")
        assert applied["backend"] == "cgroup-v2"
        assert (applied["quota_ppm"], applied["raw"], applied["outside"]) == (200000, "20000 100000", 0), applied
        assert applied["actions"][:3] == [
            f"mkdir {REST}",
            f"move processes of {ROOT} to {REST}/cgroup.procs",
            f"write '+cpu' > {ROOT}/cgroup.subtree_control",
        ], applied
        assert procs(node, ROOT) == set() and procs(node, REST) == {keeper}
        assert drive(node, "200000")["actions"] == []
        limited = window(node, 15, {TEST_UID: GROUP})

        # A new login lands in its logind session, outside the group: counted, and the next quota-set moves it in
        # (the controller re-sends quota-set while ``outside`` is not 0).
        login = subprocess.Popen(node.ssh_argv(USERS[TEST_UID], "exec sleep 300", fresh=True),
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while node.ssh("root", f"pgrep -u {TEST_UID} -x sleep", check=False).returncode != 0:
                assert time.monotonic() < deadline, "the new login did not start"
                time.sleep(1)
            sleeper = int(node.ssh("root", f"pgrep -u {TEST_UID} -x sleep").stdout.split()[0])
            assert drive(node, "get")["outside"] >= 1
            again = drive(node, "200000")
            assert again["outside"] == 0 and sleeper in procs(node, GROUP), again
        finally:
            login.terminate()
            login.wait(timeout=30)
            node.ssh("root", f"pkill -u {TEST_UID} -x sleep; true", check=False)

        cleared = drive(node, "clear")
        assert (cleared["quota_ppm"], cleared["outside"]) == (None, 0), cleared
        assert cleared["actions"][-1] == f"move processes of {GROUP} to {REST}/cgroup.procs; rmdir {GROUP}", cleared
        assert node.ssh("root", f"test -e {GROUP}", check=False).returncode == 1
        loop = int(node.ssh("root", f"pgrep -u {TEST_UID} -x sh").stdout.split()[0])
        assert loop in procs(node, REST)  # the cleared user's work runs on, in the root's leaf
        free = window(node, 15, {TEST_UID: REST})
    print(f"limited: {limited}\nfree: {free}")
    # Both loops ran side by side for the same seconds: the group's cpu.max held the test user well under the control.
    assert limited[TEST_UID]["nr_throttled"] > 0
    assert limited[TEST_UID]["usage_usec"] * 2 < limited[CONTROL_UID]["usage_usec"], limited
    # Lifted: nothing throttles the leaf, and the two loops share the CPU again (half is a wide margin).
    assert free[TEST_UID].get("nr_throttled", 0) == 0
    assert free[TEST_UID]["usage_usec"] * 2 > free[CONTROL_UID]["usage_usec"], free
