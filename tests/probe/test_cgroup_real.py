"""CPU quotas and GPU device blocks on this machine's real cgroup v1 hierarchies, through the node command."""

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from probe import procfs
from tests.probe.support import needs_root, run_node

V1 = "/sys/fs/cgroup"
pytestmark = [
    needs_root,
    pytest.mark.root,
    pytest.mark.skipif(
        not os.access(V1 + "/cpu/cpu.cfs_quota_us", os.W_OK) or os.path.isdir("/run/systemd/system"),
        reason="needs writable cgroup v1 cpu/devices hierarchies without systemd",
    ),
]
BUSY = "print('ready', flush=True)\nwhile True:\n    pass\n"
PROBE_OPEN = (
    "import os, sys\n"
    "print('ready', flush=True)\n"
    "for line in sys.stdin:\n"
    "    try:\n"
    "        os.close(os.open(line.strip(), os.O_RDWR))\n"
    "        print('ok', flush=True)\n"
    "    except OSError as error:\n"
    "        print(os.strerror(error.errno), flush=True)\n"
)


def _cpu_ticks(pid):
    stat = procfs.parse_stat(procfs.read_bytes(f"/proc/{pid}/stat"))
    return stat.utime + stat.stime


def _shares_of_one_cpu(pids, seconds=2.0):
    """Each pid's CPU over the same interval, as a share of one CPU: the processes compete at one moment."""
    before, started = [_cpu_ticks(pid) for pid in pids], time.monotonic()
    time.sleep(seconds)
    after, elapsed = [_cpu_ticks(pid) for pid in pids], time.monotonic() - started
    return [(b - a) / os.sysconf("SC_CLK_TCK") / elapsed for a, b in zip(before, after, strict=True)]


def _throttled(group):
    stats = dict(line.split() for line in Path(group, "cpu.stat").read_text().splitlines())
    return int(stats["nr_throttled"])


@pytest.mark.slow
def test_a_busy_loop_is_throttled_near_the_quota_and_runs_free_after_clear(test_users, parent, node_script, spawn):
    name, config = parent
    user, other = test_users
    busy = spawn(user, ["/usr/bin/python3", "-c", BUSY], ready=True)
    # The control: the same loop, never restricted, measured over the same intervals. On a machine busy
    # with other work both get less; only the comparison with it says what the quota did.
    control = spawn(other, ["/usr/bin/python3", "-c", BUSY], ready=True)
    cpus = os.cpu_count()
    ppm = 1000000 // (4 * cpus)  # a quarter of one CPU, expressed as a share of the whole node
    status, result, _ = run_node(node_script, ["--config", str(config), "quota-set", str(user.pw_uid), str(ppm)])
    assert status == 0 and result["changed"] is True and result["after"]["quota_ppm"] == ppm
    group = f"{V1}/cpu/{name}/user-{user.pw_uid}"
    assert Path(group, "cpu.cfs_quota_us").read_text().strip() == "25000"
    assert str(busy.pid) in Path(group, "cgroup.procs").read_text().split()
    throttled_before = _throttled(group)
    share, free = _shares_of_one_cpu([busy.pid, control.pid])
    # The quota caps it at 0.25 (+ one tick of measurement error) whatever else runs; the kernel says it
    # throttled the group; and it gets at least half of what the quota or the competition leaves it.
    assert share <= 0.27, share
    assert _throttled(group) > throttled_before
    assert share >= 0.5 * min(0.25, free), (share, free)
    status, again, _ = run_node(node_script, ["--config", str(config), "quota-set", str(user.pw_uid), str(ppm)])
    assert (status, again["changed"], again["actions"]) == (0, False, [])
    status, got, _ = run_node(node_script, ["--config", str(config), "quota-get", str(user.pw_uid)])
    assert (status, got["quota_ppm"], got["backend"]) == (0, ppm, "cgroup-v1")
    status, cleared, _ = run_node(node_script, ["--config", str(config), "quota-clear", str(user.pw_uid)])
    assert status == 0 and cleared["changed"] is True and cleared["after"]["quota_ppm"] is None
    assert not os.path.exists(group)
    # Free again: it keeps up with the control, which the quota never touched (same moment, same cores).
    share, free = _shares_of_one_cpu([busy.pid, control.pid])
    assert share >= 0.6 * free, (share, free)


def test_a_blocked_user_cannot_open_an_nvidia_device_and_can_after_unblock(
    test_users, parent, node_script, spawn, device
):
    name, config = parent
    user = test_users[0]
    opener = spawn(user, ["/usr/bin/python3", "-c", PROBE_OPEN], ready=True, stdin=subprocess.PIPE)

    def try_open():
        opener.stdin.write(str(device) + "\n")
        opener.stdin.flush()
        return opener.stdout.readline().strip()

    no_driver = os.strerror(6)  # ENXIO: the cgroup let the open through to a missing driver
    assert try_open() == no_driver
    uid = str(user.pw_uid)
    status, result, _ = run_node(node_script, ["--config", str(config), "gpu-block", uid])
    assert (status, result["changed"], result["after"]["blocked"]) == (0, True, True)
    assert try_open() == os.strerror(1)  # EPERM: the devices cgroup refused it
    status, result, _ = run_node(node_script, ["--config", str(config), "gpu-block", uid])
    assert (status, result["changed"]) == (0, False)
    status, result, _ = run_node(node_script, ["--config", str(config), "gpu-state", uid])
    assert (status, result["blocked"]) == (0, True)
    status, result, _ = run_node(node_script, ["--config", str(config), "gpu-unblock", uid])
    assert (status, result["changed"], result["after"]["blocked"]) == (0, True, False)
    assert try_open() == no_driver
    assert not os.path.exists(f"{V1}/devices/{name}/user-{uid}")


def test_enforcement_on_protected_identities_is_refused(test_users, parent, node_script, tmp_path):
    name, _ = parent
    exempt_user, exempt_member = test_users
    config = tmp_path / "protected.json"
    config.write_text(
        json.dumps(
            {"cgroup_parent": name, "exempt_users": [exempt_user.pw_name], "exempt_groups": [exempt_member.pw_name]}
        )
    )
    for uid in (0, 1, 65534, exempt_user.pw_uid, exempt_member.pw_uid):
        for words in (["quota-set", str(uid), "100000"], ["quota-clear", str(uid)], ["gpu-block", str(uid)]):
            status, result, stderr = run_node(node_script, ["--config", str(config)] + words)
            assert (status, result["error"]["reason"]) == (2, "protected_identity"), (uid, words, result)
            assert "refused protected_identity" in stderr
    assert not os.path.exists(f"{V1}/cpu/{name}")


def test_gpu_state_and_quota_get_count_processes_outside_the_groups_and_a_re_apply_moves_them(
    test_users, parent, node_script, spawn, device
):
    """The read verbs say what is true: a process of a blocked and throttled user that is not in the groups
    (a session started by other means than a child of a member) is counted, and the next apply moves it."""
    name, config = parent
    user = test_users[0]
    uid = str(user.pw_uid)
    for words in (["gpu-block", uid], ["quota-set", uid, "100000"]):
        status, result, _ = run_node(node_script, ["--config", str(config)] + words)
        assert (status, result["after"]["outside"]) == (0, 0), result
    stray = spawn(user, ["/usr/bin/python3", "-c", PROBE_OPEN], ready=True, stdin=subprocess.PIPE)
    stray.stdin.write(device + "\n")
    stray.stdin.flush()
    assert stray.stdout.readline().strip() == os.strerror(6)  # ENXIO: outside the devices group, the open got through
    status, state, _ = run_node(node_script, ["--config", str(config), "gpu-state", uid])
    assert (status, state["blocked"], state["outside"]) == (0, True, 1), state
    status, quota, _ = run_node(node_script, ["--config", str(config), "quota-get", uid])
    assert (status, quota["quota_ppm"], quota["outside"]) == (0, 100000, 1), quota
    for words in (["gpu-block", uid], ["quota-set", uid, "100000"]):
        status, result, _ = run_node(node_script, ["--config", str(config)] + words)
        assert (status, result["changed"], result["before"]["outside"], result["after"]["outside"]) == (0, True, 1, 0)
        status, again, _ = run_node(node_script, ["--config", str(config)] + words)
        assert (status, again["changed"], again["actions"]) == (0, False, [])
    stray.stdin.write(device + "\n")
    stray.stdin.flush()
    assert stray.stdout.readline().strip() == os.strerror(1)  # EPERM now
    for words in (["gpu-unblock", uid], ["quota-clear", uid]):
        assert run_node(node_script, ["--config", str(config)] + words)[0] == 0


@pytest.fixture
def two_gpus():
    """Character devices 195:0 and 195:1 (like /dev/nvidia0 and /dev/nvidia1; no driver here)."""
    directory = tempfile.mkdtemp(prefix="gpuledger-test-dev-")
    os.chmod(directory, 0o755)
    paths = []
    for minor in (0, 1):
        path = os.path.join(directory, f"nvidia{minor}")
        os.mknod(path, 0o20666, os.makedev(195, minor))
        os.chmod(path, 0o666)  # mknod applies the umask
        paths.append(path)
    yield paths
    shutil.rmtree(directory)


def _opener(spawn, user):
    child = spawn(user, ["/usr/bin/python3", "-c", PROBE_OPEN], ready=True, stdin=subprocess.PIPE)

    def try_open(path):
        child.stdin.write(path + "\n")
        child.stdin.flush()
        return child.stdout.readline().strip()

    return try_open


def test_a_gpu_mask_denies_only_its_minors_to_others_and_unblock_restores(
    test_users, parent, node_script, spawn, two_gpus, tmp_path
):
    """The GPU queue's per-GPU rule: the holder opens 0; the other user is refused 0 and allowed 1 (ENXIO =
    the cgroup let the open through to a missing driver, EPERM = the devices cgroup refused it)."""
    name, config = parent
    config.write_text(json.dumps({"cgroup_parent": name, "gpu_mask_dir": str(tmp_path / "masks")}))
    holder, other = test_users
    gpu0, gpu1 = two_gpus
    no_driver, refused = os.strerror(6), os.strerror(1)
    holder_open, other_open = _opener(spawn, holder), _opener(spawn, other)
    uid = str(other.pw_uid)

    def node(*words):
        status, result, stderr = run_node(node_script, ["--config", str(config), *words])
        assert status == 0, (result, stderr)
        return result

    result = node("gpu-block", "--uid", uid, "--minors", "0")
    assert (result["changed"], result["after"]["blocked"], result["after"]["denied_minors"]) == (True, True, [0])
    assert (other_open(gpu0), other_open(gpu1)) == (refused, no_driver)
    assert (holder_open(gpu0), holder_open(gpu1)) == (no_driver, no_driver)
    late = _opener(spawn, other)  # a session placed after the mask (the PAM hook's placement)
    assert late(gpu0) == no_driver  # not yet in the group: counted as outside, moved in by the next apply
    assert node("gpu-state", uid)["outside"] == 1
    assert node("gpu-block", uid, "--minors", "0")["changed"] is True
    assert (late(gpu0), late(gpu1)) == (refused, no_driver)
    again = node("gpu-block", uid, "--minors", "0")
    assert (again["changed"], again["actions"]) == (False, [])
    # Changing the mask denies the new minor and lifts the old one; the whole block and back again.
    result = node("gpu-block", uid, "--minors", "1")
    assert result["after"]["denied_minors"] == [1]
    assert (other_open(gpu0), other_open(gpu1)) == (no_driver, refused)
    assert node("gpu-block", uid)["after"]["denied_minors"] == "all"
    assert (other_open(gpu0), other_open(gpu1)) == (refused, refused)
    assert node("gpu-block", uid, "--minors", "0,1")["after"]["denied_minors"] == [0, 1]
    assert (other_open(gpu0), other_open(gpu1)) == (refused, refused)
    assert node("gpu-state", uid)["denied_minors"] == [0, 1]
    result = node("gpu-unblock", uid)
    assert (result["changed"], result["after"]["blocked"], result["after"]["denied_minors"]) == (True, False, [])
    assert (other_open(gpu0), other_open(gpu1), late(gpu0)) == (no_driver, no_driver, no_driver)
    assert list((tmp_path / "masks").iterdir()) == []
