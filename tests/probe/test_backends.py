"""One contract suite for every enforcement backend, plus the pure conversions and systemd's parsers."""

import os
import secrets

import pytest

from probe import cpuquota, plan, systemd
from probe.cgroup_v1 import CgroupV1
from probe.cgroup_v2 import CgroupV2
from probe.errors import Failed, Unsupported
from tests.probe import proctree
from tests.probe.support import is_root

CPUS = 64
NO_PROCESSES_UID = 2999998  # no process runs as this uid, so no process moves are planned


def _fixture_v1(tmp_path):
    root = tmp_path / "cgroup"
    for hierarchy, files in (("cpu", ("cpu.cfs_quota_us", "cpu.cfs_period_us")), ("devices", ("devices.allow",))):
        proctree.write(str(root), f"{hierarchy}/cgroup.procs", "")
        for name in files:
            proctree.write(str(root), f"{hierarchy}/{name}", "-1\n" if "quota" in name else "100000\n")
    return root


def _fixture_v2(tmp_path, nested=False):
    root = tmp_path / "cgroup"
    proctree.write(str(root), "cgroup.controllers", "cpuset cpu io memory pids\n")
    proctree.write(str(root), "cgroup.subtree_control", "memory\n")
    proctree.write(str(root), "cgroup.procs", "")
    if nested:  # a delegated subtree or a cgroup namespace's root: not the hierarchy's root
        proctree.write(str(root), "cgroup.type", "domain\n")
    return root


CONTROL_FILES = {
    "cgroup.procs": "",
    "cpu.cfs_quota_us": "-1\n",
    "cpu.cfs_period_us": "100000\n",
    "cpu.max": "max 100000\n",
    "cgroup.subtree_control": "",
    "devices.deny": "",
    "devices.allow": "",
}


def _fixture_mkdir(path, mode=0o777):
    """mkdir as cgroupfs does it: the new group comes with its control files."""
    os.mkdir(path, mode)
    for name, text in CONTROL_FILES.items():
        with open(os.path.join(path, name), "w") as handle:
            handle.write(text)


def _fixture_rmdir(path):
    """rmdir as cgroupfs does it: control files go with the group; anything else keeps it busy."""
    for name in CONTROL_FILES:
        os.unlink(os.path.join(path, name))
    os.rmdir(path)


FIXTURE_OPS = plan.Ops(_fixture_mkdir, _fixture_rmdir)


@pytest.fixture(params=["v1-fixture", "v2-fixture", "v2-nested-fixture", "v1-real"])
def subject(request, tmp_path):
    """``(backend, ops)``: each implementation with the directory operations of its cgroup tree."""
    proc = str(tmp_path / "proc")
    proctree.build(proc, [])
    if request.param == "v1-real":
        if not is_root() or not os.access("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", os.W_OK):
            pytest.skip("needs root and a writable cgroup v1 cpu hierarchy")
        parent = "gpuledger-test-" + secrets.token_hex(4)
        yield CgroupV1("/sys/fs/cgroup", parent, proc, CPUS, str(tmp_path / "masks")), plan.REAL_OPS
        for hierarchy in ("cpu", "devices"):
            path = f"/sys/fs/cgroup/{hierarchy}/{parent}"
            for child in os.listdir(path) if os.path.isdir(path) else []:
                if os.path.isdir(os.path.join(path, child)):
                    os.rmdir(os.path.join(path, child))
            if os.path.isdir(path):
                os.rmdir(path)
        return
    if request.param == "v1-fixture":
        yield CgroupV1(str(_fixture_v1(tmp_path)), "gpuledger", proc, CPUS, str(tmp_path / "masks")), FIXTURE_OPS
    else:
        root = _fixture_v2(tmp_path, nested=request.param == "v2-nested-fixture")
        yield CgroupV2(str(root), "gpuledger", proc, CPUS), FIXTURE_OPS


def _converge(subject, ppm):
    backend, ops = subject
    observed = backend.observe_quota(NO_PROCESSES_UID)
    actions = plan.execute(backend.plan_quota(NO_PROCESSES_UID, ppm, observed), ops)
    return actions, backend.observe_quota(NO_PROCESSES_UID)


def test_quota_set_read_clear_and_idempotence(subject):
    backend = subject[0]
    assert backend.observe_quota(NO_PROCESSES_UID).quota_ppm is None
    actions, after = _converge(subject, 100000)
    assert actions and after.quota_ppm == 100000
    again = backend.plan_quota(NO_PROCESSES_UID, 100000, after)
    assert again.steps == [] and again.reason
    actions, after = _converge(subject, 12347)
    assert actions and after.quota_ppm == 12346  # floor(12347 * 64 / 10) = 79020 us per 100 ms, read back rounded down
    actions, after = _converge(subject, None)
    assert actions and after.quota_ppm is None
    assert backend.plan_quota(NO_PROCESSES_UID, None, after).steps == []


def test_gpu_block_unblock_and_idempotence(subject):
    backend, ops = subject
    observed = backend.observe_gpu(NO_PROCESSES_UID)
    assert observed.blocked is False and observed.majors == [195, 234, 235]
    if isinstance(backend, CgroupV2):
        with pytest.raises(Unsupported):
            backend.plan_gpu(NO_PROCESSES_UID, "all", observed)
        assert backend.plan_gpu(NO_PROCESSES_UID, None, observed).steps == []
        return
    plan.execute(backend.plan_gpu(NO_PROCESSES_UID, "all", observed), ops)
    observed = backend.observe_gpu(NO_PROCESSES_UID)
    assert observed.blocked is True
    assert backend.plan_gpu(NO_PROCESSES_UID, "all", observed).steps == []
    plan.execute(backend.plan_gpu(NO_PROCESSES_UID, None, observed), ops)
    observed = backend.observe_gpu(NO_PROCESSES_UID)
    assert observed.blocked is False
    assert backend.plan_gpu(NO_PROCESSES_UID, None, observed).steps == []


def test_v2_under_a_nested_root_moves_the_roots_processes_into_a_leaf_first(tmp_path):
    # The kernel refuses +cpu in a non-root cgroup that holds processes (EBUSY), and refuses a process back in it
    # once it has; tests/vm/test_cgroup_v2_delegated.py runs the same plans on a real delegated subtree.
    proc = str(tmp_path / "proc")
    proctree.build(proc, [])
    root = str(_fixture_v2(tmp_path, nested=True))
    backend = CgroupV2(root, "gpuledger", proc, CPUS)
    steps = backend.plan_quota(NO_PROCESSES_UID, 100000, backend.observe_quota(NO_PROCESSES_UID)).steps
    rest = root + "/gpuledger-rest"
    assert steps[:3] == [
        plan.MakeDir(rest),
        plan.Drain(root, rest + "/cgroup.procs"),
        plan.WriteFile(root + "/cgroup.subtree_control", "+cpu"),
    ]
    plan.execute(backend.plan_quota(NO_PROCESSES_UID, 100000, backend.observe_quota(NO_PROCESSES_UID)), FIXTURE_OPS)
    proctree.write(root, "cgroup.subtree_control", "memory cpu\n")  # what the kernel shows after the +cpu write
    observed = backend.observe_quota(NO_PROCESSES_UID)
    assert observed.quota_ppm == 100000 and observed.rest_exists
    (*_, drain) = backend.plan_quota(NO_PROCESSES_UID, None, observed).steps
    assert drain == plan.DrainAndRemove(f"{root}/gpuledger/user-{NO_PROCESSES_UID}", rest + "/cgroup.procs")
    flat = CgroupV2(str(_fixture_v2(tmp_path / "flat")), "gpuledger", proc, CPUS)
    steps = flat.plan_quota(NO_PROCESSES_UID, 100000, flat.observe_quota(NO_PROCESSES_UID)).steps
    assert steps[0] == plan.WriteFile(str(tmp_path / "flat/cgroup/cgroup.subtree_control"), "+cpu")


def test_drain_moves_until_a_read_finds_the_group_empty(tmp_path):
    group, target = tmp_path / "group", tmp_path / "target.procs"
    group.mkdir()
    (group / "cgroup.procs").write_text("")
    target.write_text("")
    assert plan.execute(plan.Plan([plan.Drain(str(group), str(target))], "")) == [
        f"move processes of {group} to {target}"
    ]
    (group / "cgroup.procs").write_text("4242\n")  # a plain file never empties: the drain gives up, EBUSY, as data
    with pytest.raises(Failed, match="processes keep appearing"):
        plan.execute(plan.Plan([plan.Drain(str(group), str(target))], ""))
    assert target.read_text() == "4242"


def test_v1_block_recovers_from_a_crash_between_mkdir_and_deny(tmp_path):
    proc = str(tmp_path / "proc")
    proctree.build(proc, [])
    backend = CgroupV1(str(_fixture_v1(tmp_path)), "gpuledger", proc, CPUS, str(tmp_path / "masks"))
    os.makedirs(tmp_path / "cgroup/devices/gpuledger/user-7.staging")  # left by a crash: no deny rules
    observed = backend.observe_gpu(7)
    assert observed.blocked is False
    steps = backend.plan_gpu(7, "all", observed).steps
    assert isinstance(steps[0], plan.DrainAndRemove) and isinstance(steps[-1], plan.Rename)


@pytest.mark.parametrize(
    ("ppm", "cpus", "percent", "quota_us"),
    [
        (100000, 64, 640, 640000),  # 10 % of a 64-CPU node: CPUQuota=640%
        (1000000, 2, 200, 200000),
        (1, 1, 1, 1000),  # floors: never below 1 % / 1 ms
        (333333, 3, 99, 99999),  # rounds down
        (500000, 1, 50, 50000),
    ],
)
def test_quota_conversions_are_exact_and_round_down(ppm, cpus, percent, quota_us):
    assert cpuquota.to_systemd_percent(ppm, cpus) == percent
    assert cpuquota.to_quota_us(ppm, cpus) == quota_us
    assert cpuquota.from_quota_us(quota_us, 100000, cpus) <= ppm or quota_us == cpuquota.MIN_QUOTA_US


@pytest.mark.parametrize(
    ("text", "usec"),
    [("6.400000s", 6400000), ("1min 4s", 64000000), ("infinity", None), ("500ms", 500000), ("1h 2min", 3720000000)],
)
def test_systemd_timespans(text, usec):
    assert systemd.parse_timespan_usec(text) == usec


def _systemd(output):
    calls = []

    def show(argv):
        calls.append(argv)
        return output

    return systemd.Systemd("/nonexistent-proc", CPUS, show=show), calls


def test_systemd_quota_plans(tmp_path):
    proc = str(tmp_path / "proc")
    proctree.build(proc, [])
    backend, calls = _systemd("CPUQuotaPerSecUSec=infinity\n")
    backend.proc_root = proc
    observed = backend.observe_quota(1001)
    assert calls[0][-2:] == ["--property=CPUQuotaPerSecUSec", "user-1001.slice"]
    (step,) = backend.plan_quota(1001, 100000, observed).steps
    assert step.argv[1:] == ("set-property", "--runtime", "user-1001.slice", "CPUQuota=640%")
    assert backend.plan_quota(1001, None, observed).steps == []
    backend, _ = _systemd("CPUQuotaPerSecUSec=6.400000s\n")
    backend.proc_root = proc
    observed = backend.observe_quota(1001)
    assert (observed.quota_ppm, observed.outside) == (100000, 0)
    assert backend.plan_quota(1001, 100000, observed).steps == []
    assert backend.plan_quota(1001, None, observed).steps[0].argv[-1] == "CPUQuota="


def test_systemd_gpu_plans_allow_every_device_group_but_nvidias(tmp_path):
    proc = str(tmp_path / "proc")
    proctree.build(proc, [])
    backend, _ = _systemd("DevicePolicy=auto\nDeviceAllow=\n")
    backend.proc_root = proc
    observed = backend.observe_gpu(1001)
    (step,) = backend.plan_gpu(1001, "all", observed).steps
    assert step.argv[4] == "DevicePolicy=closed"
    assert "DeviceAllow=char-pts rwm" in step.argv and "DeviceAllow=block-sd rwm" in step.argv
    assert not [arg for arg in step.argv if "nvidia" in arg]
    assert not [arg for arg in step.argv if "/dev/" in arg]  # /dev/tty etc.: closed still allows the pseudo devices
    assert backend.plan_gpu(1001, None, observed).steps == []


def test_systemd_counts_the_users_processes_outside_the_user_slice(tmp_path):
    """A process of the uid in a system service's cgroup is outside user-UID.slice: reported, not moved."""
    proc = str(tmp_path / "proc")
    proctree.build(proc, [{"pid": 10, "comm": "bash", "uid": 1001}, {"pid": 11, "comm": "job", "uid": 1001},
                          {"pid": 12, "comm": "other", "uid": 1002}])
    proctree.write(proc, "10/cgroup", "0::/user.slice/user-1001.slice/session-3.scope\n")
    proctree.write(proc, "11/cgroup", "1:name=systemd:/system.slice/cron.service\n0::/system.slice/cron.service\n")
    proctree.write(proc, "12/cgroup", "0::/user.slice/user-1002.slice/session-4.scope\n")
    backend, _ = _systemd("DevicePolicy=closed\nDeviceAllow=\nCPUQuotaPerSecUSec=6.400000s\n")
    backend.proc_root = proc
    assert (backend.observe_gpu(1001).outside, backend.observe_quota(1001).outside) == (1, 1)
    assert not systemd.in_slice("0::/user.slice/user-10011.slice/x.scope\n", "user-1001.slice")
    assert systemd.in_slice("4:cpu,cpuacct:/user.slice/user-1001.slice\n", "user-1001.slice")


def _systemd_with_gpus(tmp_path, show_output):
    proc, dev = str(tmp_path / "proc"), tmp_path / "dev"
    proctree.build(proc, [])
    dev.mkdir()
    for name in ("nvidia0", "nvidia1", "nvidia2", "nvidiactl", "nvidia-modeset", "nvidia-uvm", "null"):
        (dev / name).write_text("")
    backend, _ = _systemd(show_output)
    backend.proc_root, backend.dev_root = proc, str(dev)
    return backend


def _show_of(step):
    """What ``systemctl show`` prints after that ``set-property``: the policy, then one line per DeviceAllow."""
    assignments = step.argv[4:]
    policy = next(a for a in assignments if a.startswith("DevicePolicy=")).partition("=")[2]
    allows = [a for a in assignments if a.startswith("DeviceAllow=") and a != "DeviceAllow="]
    lines = "\n".join(allows)
    return f"DevicePolicy={policy}\n{lines}\n"


def test_systemd_gpu_mask_allows_the_other_gpus_and_the_shared_nvidia_devices(tmp_path):
    backend = _systemd_with_gpus(tmp_path, "DevicePolicy=auto\nDeviceAllow=\n")
    observed = backend.observe_gpu(1001)
    assert (observed.gpu_minors, observed.shared_nodes, observed.denied_minors) == ((0, 1, 2), (
        "nvidiactl", "nvidia-modeset"), None)
    (step,) = backend.plan_gpu(1001, (0, 2), observed).steps
    assert step.argv[4:6] == ("DevicePolicy=closed", "DeviceAllow=")  # reset, then the whole list in one call
    nvidia = [arg for arg in step.argv if "nvidia" in arg]
    assert nvidia == ["DeviceAllow=char-nvidia-uvm rw", "DeviceAllow=char-nvidia-caps rw",
                      "DeviceAllow=/dev/nvidiactl rw", "DeviceAllow=/dev/nvidia-modeset rw",
                      "DeviceAllow=/dev/nvidia1 rw"]
    assert "DeviceAllow=char-pts rwm" in step.argv and "char-nvidia-frontend" not in " ".join(step.argv)
    masked = _systemd_with_gpus(tmp_path / "after", _show_of(step)).observe_gpu(1001)
    assert (masked.blocked, masked.denied_minors) == (True, (0, 2))
    assert backend.plan_gpu(1001, (0, 2), masked).steps == []  # idempotent: the same list plans nothing
    (change,) = backend.plan_gpu(1001, (1,), masked).steps
    assert "DeviceAllow=/dev/nvidia0 rw" in change.argv and "DeviceAllow=/dev/nvidia1 rw" not in change.argv
    (whole,) = backend.plan_gpu(1001, "all", masked).steps
    assert not [arg for arg in whole.argv if "nvidia" in arg]
    blocked = _systemd_with_gpus(tmp_path / "all", _show_of(whole)).observe_gpu(1001)
    assert blocked.denied_minors == "all" and backend.plan_gpu(1001, "all", blocked).steps == []
    (lift,) = backend.plan_gpu(1001, None, masked).steps
    # Not the bare reset: systemd 252 would keep the closed program attached (module docstring of probe.systemd).
    assert lift.argv[4:] == ("DevicePolicy=auto", "DeviceAllow=", "DeviceAllow=char-* rwm", "DeviceAllow=block-* rwm")
    lifted = _systemd_with_gpus(tmp_path / "lifted", _show_of(lift)).observe_gpu(1001)
    assert (lifted.blocked, lifted.denied_minors) == (False, None)
    assert backend.plan_gpu(1001, None, lifted).steps == []


def test_v1_gpu_mask_plans_deny_the_new_then_allow_the_old_with_the_union_recorded_first(tmp_path):
    proc = str(tmp_path / "proc")
    proctree.build(proc, [])
    masks = str(tmp_path / "masks")
    backend = CgroupV1(str(_fixture_v1(tmp_path)), "gpuledger", proc, CPUS, masks)
    plan.execute(backend.plan_gpu(7, (0, 3), backend.observe_gpu(7)), FIXTURE_OPS)
    observed = backend.observe_gpu(7)
    assert (observed.blocked, observed.denied_minors) == (True, (0, 3))
    assert backend.plan_gpu(7, (0, 3), observed).steps == []
    steps = backend.plan_gpu(7, (3, 5), observed).steps
    assert [plan.describe(step).split(" /")[0] for step in steps] == [
        "record 'c 195:0 rwm\\nc 195:3 rwm\\nc 195:5 rwm\\n' in", "write 'c 195:5 rwm' >", "write 'c 195:0 rwm' >",
        "record 'c 195:3 rwm\\nc 195:5 rwm\\n' in"]
    assert steps[1].path.endswith("devices.deny") and steps[2].path.endswith("devices.allow")
    plan.execute(backend.plan_gpu(7, "all", observed), FIXTURE_OPS)
    observed = backend.observe_gpu(7)
    assert observed.denied_minors == "all" and observed.denied == {"c 195:* rwm", "c 234:* rwm", "c 235:* rwm"}
    os.unlink(os.path.join(masks, "gpuledger.user-7"))  # a group made before masks existed: the whole block
    assert backend.observe_gpu(7).denied_minors == "all"
    plan.execute(backend.plan_gpu(7, None, observed), FIXTURE_OPS)
    assert backend.observe_gpu(7).blocked is False and os.listdir(masks) == []
