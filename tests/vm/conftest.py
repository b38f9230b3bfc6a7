"""Fixtures of the VM tests: one Debian 12 guest per session (systemd, cgroup v2), shared by every test here.

A VM test takes ``vm_node`` (booted, root and the test users reachable over pinned SSH) or ``probe_node`` (the
same guest with the probe installed). Booting is the expensive part (about 30 s under TCG), so it happens once.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness.vm import VmLab, VmNode, build_image, vm_unavailable
from tests.rollout.lab import Recap
from tests.vm.install import install_probe
from tests.vm.role import RoleRun


@pytest.fixture(scope="session")
def vm_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VmLab]:
    reason = vm_unavailable()
    if reason:
        pytest.skip(reason)
    lab = VmLab(tmp_path_factory.mktemp("vm"), build_image())
    try:
        lab.boot(1)
        yield lab
    finally:
        # Consoles stay under the basetemp for diagnosis; the qemu processes do not outlive the session.
        lab.close()


@pytest.fixture(scope="session")
def vm_node(vm_lab: VmLab) -> VmNode:
    return vm_lab.nodes[0]


@pytest.fixture(scope="session")
def probe_node(vm_node: VmNode, tmp_path_factory: pytest.TempPathFactory) -> VmNode:
    install_probe(vm_node, tmp_path_factory.mktemp("vm-probe"))
    return vm_node


@pytest.fixture(scope="session")
def role_run(vm_node: VmNode, tmp_path_factory: pytest.TempPathFactory) -> RoleRun:
    return RoleRun(vm_node, tmp_path_factory.mktemp("vm-role"))


@pytest.fixture(scope="session")
def converged(role_run: RoleRun) -> Recap:
    recap = role_run.playbook()
    assert recap.rc == 0, recap.explain()
    return recap
