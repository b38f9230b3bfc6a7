"""Kill through the node command against real processes of a test user (root only)."""

import json
import random
import signal

import pytest

from probe import procfs
from tests.probe.support import PY38, install_node, needs_root, run_node

pytestmark = [needs_root, pytest.mark.root]
RECORDER = (
    "import signal, sys, time\n"
    "def note(signum, frame):\n"
    "    open(sys.argv[1], 'a').write('%d\\n' % signum)\n"
    "for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):\n"
    "    signal.signal(s, note)\n"
    "print('ready', flush=True)\n"
    "time.sleep(600)\n"
)
IGNORER = (
    "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\ntime.sleep(600)\n"
)
BOOT_ID = procfs.read_text("/proc/sys/kernel/random/boot_id").strip()


def _start_ticks(pid):
    return procfs.parse_stat(procfs.read_bytes(f"/proc/{pid}/stat")).start_ticks


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    path = tmp_path_factory.mktemp("kill") / "node.json"
    path.write_text(json.dumps({"kill_grace_seconds": 1}))
    return path


def _kill(script, config, pid, start_ticks, uid, boot_id=BOOT_ID):
    return run_node(script, ["--config", str(config), "kill", boot_id, str(pid), str(start_ticks), str(uid)])


@pytest.mark.parametrize("python", ["venv", "3.8"])
def test_sigterm_kills_a_sleeper_and_an_ignorer_is_sigkilled_after_the_grace(
    test_users, config, node_script, tmp_path, python, spawn
):
    if python == "3.8":
        if not PY38.exists():
            pytest.skip("no Python 3.8 here")
        node_script = install_node(tmp_path / "py38", PY38)
    user = test_users[0]
    sleeper = spawn(user, ["sleep", "600"])
    status, result, _ = _kill(node_script, config, sleeper.pid, _start_ticks(sleeper.pid), user.pw_uid)
    assert (status, result["outcome"], result["signals"]) == (0, "killed", ["TERM"])
    assert sleeper.wait(5) == -signal.SIGTERM
    ignorer = spawn(user, ["/usr/bin/python3", "-c", IGNORER], ready=True)
    status, result, _ = _kill(node_script, config, ignorer.pid, _start_ticks(ignorer.pid), user.pw_uid)
    assert (status, result["outcome"], result["signals"]) == (0, "killed", ["TERM", "KILL"])
    assert result["waited_ms"] >= 1000
    assert ignorer.wait(5) == -signal.SIGKILL


def test_a_stale_identity_never_receives_a_signal(test_users, config, node_script, tmp_path, spawn):
    """PID reuse seen from the node: same pid, another start time, uid or boot. 40 trials, 0 signals."""
    owner, other = test_users
    log = tmp_path / "signals.log"
    log.touch()
    log.chmod(0o666)
    target = spawn(owner, ["/usr/bin/python3", "-c", RECORDER, str(log)], ready=True)
    start_ticks = _start_ticks(target.pid)
    rng = random.Random(11)
    for trial in range(40):
        kind = trial % 4
        ticks, uid, boot = start_ticks, owner.pw_uid, BOOT_ID
        if kind == 0:
            ticks = rng.choice([start_ticks + rng.randrange(1, 10**6), rng.randrange(0, start_ticks)])
        elif kind == 1:
            uid = other.pw_uid
        elif kind == 2:
            boot = f"00000000-0000-4000-8000-{rng.randrange(16**12):012x}"
        else:
            ticks = max(0, start_ticks - 1)
        status, result, _ = _kill(node_script, config, target.pid, ticks, uid, boot)
        assert (status, result["outcome"], result["signals"]) == (0, "stale_target", []), result
    assert target.poll() is None
    assert log.read_text() == ""


def test_an_exited_process_is_reported_and_protected_uids_are_refused(test_users, config, node_script, spawn):
    user = test_users[0]
    gone = spawn(user, ["true"])
    gone.wait()
    status, result, _ = _kill(node_script, config, gone.pid, 1, user.pw_uid)
    assert status == 0 and result["outcome"] in ("exited", "stale_target")
    status, result, stderr = _kill(node_script, config, 1, _start_ticks(1), 0)
    assert (status, result["error"]["reason"]) == (2, "protected_identity")
    assert "refused protected_identity" in stderr

