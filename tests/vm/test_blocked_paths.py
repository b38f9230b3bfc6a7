"""Every way a restricted user's work starts on a systemd node, and whether the slice's limits reach it.

The user is limited the way the controller limits a blocked user: a CPU quota on ``user-1000.slice`` (systemd
backend). Work that lands under the slice is held by it; work that lands elsewhere must at least show in the
probe's ``outside`` count (what the controller charges per process instead, docs/runbook.md "Known limit on
systemd nodes"). Each test states which of the two a path is, as seen on Debian 12 (systemd 252) before the node
role has run (the role gives cron a logind session: tests/vm/test_node_role.py).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from tests.harness.vm import VmNode
from tests.vm.workload import cron_job, verb

pytestmark = [pytest.mark.vm, pytest.mark.timeout(1800)]
UID, USER = 1000, "gltest"
SLICE = rf"/user\.slice/user-{UID}\.slice/"
QUOTA_PPM = 100000


def cgroup(text: str) -> str:
    line = text.strip()
    assert line.startswith("0::"), line
    return line[3:]


@pytest.fixture(scope="module")
def limited(probe_node: VmNode) -> Iterator[VmNode]:
    verb(probe_node, f"quota-set {UID} {QUOTA_PPM}")
    try:
        yield probe_node
    finally:
        verb(probe_node, f"quota-clear {UID}")


def outside_while(node: VmNode, start: str) -> int:
    """``quota-get``'s ``outside`` while a sleep that ``start`` (a root command line) leaves behind lives."""
    node.ssh("root", f"setsid {start} </dev/null >/dev/null 2>&1 &")
    try:
        deadline = time.monotonic() + 60
        while node.ssh("root", f"pgrep -u {USER} -x sleep", check=False).returncode != 0:
            assert time.monotonic() < deadline, "the sleep did not start"
            time.sleep(1)
        return int(verb(node, f"quota-get {UID}")["outside"])
    finally:
        node.ssh("root", f"pkill -u {USER} -x sleep; true")


def test_a_new_ssh_session_lands_in_the_limited_slice(limited: VmNode) -> None:
    placed = cgroup(limited.ssh(USER, "cat /proc/self/cgroup", fresh=True).stdout)
    assert re.fullmatch(SLICE[:-1] + r"/session-\d+\.scope", placed), placed
    show = limited.ssh("root", f"systemctl show -p CPUQuotaPerSecUSec user-{UID}.slice").stdout.strip()
    assert show == "CPUQuotaPerSecUSec=100ms"
    assert verb(limited, f"quota-get {UID}")["outside"] == 0


def test_a_systemd_run_user_unit_lands_under_the_slice(limited: VmNode) -> None:
    placed = cgroup(limited.ssh(
        USER, "systemd-run --user --wait --pipe --quiet cat /proc/self/cgroup", fresh=True).stdout)
    assert re.fullmatch(SLICE + rf"user@{UID}\.service/app\.slice/run-[^/]+\.service", placed), placed


@pytest.mark.parametrize("become", [f"su {USER} -c", f"runuser -u {USER} -- sh -c"])
def test_su_and_runuser_stay_in_the_callers_slice_and_show_as_outside(limited: VmNode, become: str) -> None:
    # The documented limit (docs/runbook.md): logind opens no session for a caller that has one.
    placed = cgroup(limited.ssh("root", f"{become} 'cat /proc/self/cgroup'").stdout)
    assert placed.startswith("/user.slice/user-0.slice/"), placed
    assert outside_while(limited, f"{become} 'exec sleep 300'") >= 1


def test_debians_cron_stack_leaves_a_job_outside_the_slice_and_it_is_counted(limited: VmNode) -> None:
    # /etc/pam.d/cron as Debian ships it: common-session-noninteractive, without pam_systemd. The node role adds
    # pam_systemd there (tests/vm/test_node_role.py); this is the node without that line.
    limited.ssh("root", r"sed -i.gl-orig '/^session\s\+optional\s\+pam_systemd\.so$/d' /etc/pam.d/cron")
    try:
        with cron_job(limited, USER) as placed:
            outside = int(verb(limited, f"quota-get {UID}")["outside"])
    finally:
        limited.ssh("root", "mv /etc/pam.d/cron.gl-orig /etc/pam.d/cron")
    print(f"cron job cgroup: {placed}, outside: {outside}")
    assert placed == "/system.slice/cron.service", placed
    assert outside >= 1
