"""The controller against the converged VM node, the production way: asyncssh with the node's host key pinned, the
``gpuledger`` account's forced command and sudo, the systemd backend on cgroup v2, PostgreSQL and the ledger.

Ground truth for metering is the workload's own account of its CPU (``getrusage`` of processes that all exit
before the next sample) and the slice's ``cpu.stat`` that the stored samples carry; the tiers are read back from
systemd (``systemctl show user-UID.slice``), not from what the controller says it did.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from collections.abc import Iterator
from decimal import Decimal

import pytest

from collector.nodes.transport.ssh import SshSettings, SshTransport
from collector.types import Node
from ledger.embedded import EmbeddedPostgres
from ledger.money import MICRO
from tests.collector.conftest import migrated_database
from tests.collector.harness import CPU_PRICE, Cluster
from tests.harness.vm import VmNode
from tests.rollout.lab import Recap
from tests.vm.role import RoleRun

pytestmark = [pytest.mark.vm, pytest.mark.timeout(1800)]
UID, USER = 1000, "gltest"
# Started before the first sample and idle until told ("go" on stdin): three children, one after another, each
# burning a second of CPU and exiting; then what the kernel accounted to them and to the parent since "go"
# (getrusage), the workload's own ground truth; then idle again until stdin closes, after the second sample, so
# the session's start and end (sshd, the user's systemd manager) fall outside the charged interval.
WORKLOAD = """
import os, resource, sys, time
def used():
    both = (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    return sum(u.ru_utime + u.ru_stime for u in map(resource.getrusage, both))
print("ready", flush=True)
sys.stdin.readline()
start = used()
for _ in range(3):
    pid = os.fork()
    if pid == 0:
        end = time.process_time() + 1.0
        while time.process_time() < end:
            pass
        os._exit(0)
    os.waitpid(pid, 0)
print(used() - start, flush=True)
sys.stdin.read()
"""
# What else runs in the slice between the two samples (sshd relaying two lines, the parent's wait): a bound.
SESSION_OVERHEAD_S = Decimal("0.5")


@pytest.fixture(scope="module")
def vm_cluster(converged: Recap, role_run: RoleRun, pg_cluster: EmbeddedPostgres,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    node = role_run.node
    known_hosts = tmp_path_factory.mktemp("vm-controller") / "known_hosts"
    known_hosts.write_text(node.known_hosts_line() + "\n")
    # A node command is a fresh python3 under TCG (seconds, not milliseconds): the timeouts are the guest's.
    transport = SshTransport(SshSettings(role_run.controller_key, known_hosts, connect_timeout_s=60,
                                         login_timeout_s=60))
    cluster = Cluster(migrated_database(pg_cluster, "glc_vm_controller"), {}, command_timeout_s=180, budget_s=600)
    cluster.over_ssh(node.name, Node(node.name, "127.0.0.1", port=node.port), transport)
    try:
        yield cluster
    finally:
        cluster.close()


def user_cpu_ns(cluster: Cluster) -> list[int]:
    """The user's cumulative slice CPU in each stored sample, oldest first."""
    found = []
    for (payload,) in cluster.rows("SELECT payload FROM collector.sample ORDER BY id"):
        found.append(next((int(r["usage_ns"]) for r in payload.get("user_cpu") or () if r["uid"] == UID), 0))
    return found


def slice_property(node: VmNode, *names: str) -> dict[str, str]:
    shown = node.ssh("root", f"systemctl show user-{UID}.slice " + " ".join(f"-p {n}" for n in names)).stdout
    return dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)


def ticked(cluster: Cluster) -> None:
    summary = cluster.tick()
    assert summary.outcomes == {"ok": 1} and summary.database_ok, summary


def test_the_controller_charges_the_slices_cpu_exactly(vm_cluster: Cluster, vm_node: VmNode) -> None:
    vm_cluster.setup_ledger({USER: 1000 * MICRO})
    argv = vm_node.ssh_argv(USER, f"python3 -c {shlex.quote(WORKLOAD)}", fresh=True)
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as workload:
        assert workload.stdin is not None and workload.stdout is not None
        assert workload.stdout.readline().strip() == "ready"
        ticked(vm_cluster)
        workload.stdin.write("go\n")
        workload.stdin.flush()
        truth = Decimal(workload.stdout.readline().strip()).quantize(Decimal("0.000001"))
        ticked(vm_cluster)
        workload.stdin.close()
        assert workload.wait(timeout=120) == 0
    first, second = user_cpu_ns(vm_cluster)[-2:]
    charged = vm_cluster.usage_seconds(USER, "cpu")
    # Exactly the slice's cpu.stat growth between the two samples, all of it from processes gone before the second.
    assert charged == Decimal(second - first).scaleb(-9)
    assert truth >= 3 and truth <= charged <= truth + SESSION_OVERHEAD_S, (truth, charged)
    # The price book's rounding (docs/ledger.md): the interval's exact amount, half up to the micro-unit.
    price = CPU_PRICE[0] * MICRO / CPU_PRICE[1]
    assert vm_cluster.charged_micro(USER) == int((charged * price).to_integral_value("ROUND_HALF_UP"))


def test_tiers_drive_the_slice_and_a_recharge_lifts_within_one_tick(vm_cluster: Cluster, vm_node: VmNode) -> None:
    cpus = int(vm_node.ssh("root", "nproc").stdout)
    balance = vm_cluster.ledger.balance(f"user:{USER}").available
    # Into limited (below 10, not below 0): the policy's 50 % of the node's CPUs, and GPUs closed.
    vm_cluster.ledger.adjust(USER, -(balance - 5 * MICRO), idem_key="limited", actor="test", reason="test: limited")
    ticked(vm_cluster)
    limited = slice_property(vm_node, "CPUQuotaPerSecUSec", "DevicePolicy")
    assert limited["CPUQuotaPerSecUSec"] == _per_second(50 * cpus) and limited["DevicePolicy"] == "closed", limited
    # Blocked: 10 %.
    vm_cluster.ledger.adjust(USER, -10 * MICRO, idem_key="blocked", actor="test", reason="test: blocked")
    ticked(vm_cluster)
    assert slice_property(vm_node, "CPUQuotaPerSecUSec")["CPUQuotaPerSecUSec"] == _per_second(10 * cpus)
    # A new session of the blocked user is held to the quota: its cgroup is under the slice. Its login is slow
    # under TCG (the user's manager starts inside the throttled slice), hence the longer bound.
    placed = vm_node.ssh(USER, "cat /proc/self/cgroup", fresh=True, timeout=300).stdout
    assert f"/user.slice/user-{UID}.slice/" in placed, placed
    vm_cluster.ledger.recharge(USER, 500 * MICRO, idem_key="pay", actor="test")
    ticked(vm_cluster)
    lifted = slice_property(vm_node, "CPUQuotaPerSecUSec", "DevicePolicy")
    assert lifted == {"CPUQuotaPerSecUSec": "infinity", "DevicePolicy": "auto"}, lifted


def _per_second(percent: int) -> str:
    """systemd's spelling of ``CPUQuota=percent%`` as CPUQuotaPerSecUSec (``1s``, ``500ms``, ``1.500000s``)."""
    usec = percent * 10_000
    if usec % 1_000_000 == 0:
        return f"{usec // 1_000_000}s"
    if usec < 1_000_000:
        return f"{usec // 1000}ms"
    return f"{Decimal(usec).scaleb(-6):f}s"


def test_the_kill_protocol_on_a_real_process(vm_cluster: Cluster, vm_node: VmNode, role_run: RoleRun) -> None:
    """``kill`` over the controller's key: a real process of the user, named by boot id, pid and start time, is
    gone after it; the same pid named with another start time (a reused pid) is left alone."""
    pid = int(vm_node.ssh(USER, "setsid sleep 600 > /dev/null 2>&1 < /dev/null & echo $!", fresh=True).stdout)
    boot_id = vm_node.ssh("root", "cat /proc/sys/kernel/random/boot_id").stdout.strip()
    start_ticks = int(vm_node.ssh("root", f"cat /proc/{pid}/stat").stdout.rsplit(")", 1)[1].split()[19])

    def kill(ticks: int) -> dict[str, object]:
        done = vm_node.ssh("gpuledger", f"kill {boot_id} {pid} {ticks} {UID}", key=role_run.controller_key,
                           check=False)
        answer: dict[str, object] = json.loads(done.stdout)
        return answer

    reused = kill(start_ticks + 1)
    assert (reused["ok"], reused["outcome"], reused["signals"]) == (True, "stale_target", []), reused
    assert vm_node.ssh("root", f"test -d /proc/{pid}", check=False).returncode == 0
    done = kill(start_ticks)
    assert (done["ok"], done["outcome"], done["signals"]) == (True, "killed", ["TERM"]), done
    deadline = time.monotonic() + 30
    while vm_node.ssh("root", f"test -d /proc/{pid}", check=False).returncode == 0:
        assert time.monotonic() < deadline, "the process outlived the kill"
        time.sleep(1)
