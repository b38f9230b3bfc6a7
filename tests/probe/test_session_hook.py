"""The PAM session hook (``session-open``) on this machine's real cgroup v1, through real PAM stacks.

A blocked and throttled user starts new sessions by ssh (a real sshd whose PAM service is its own: a link to
sshd named ``sshd-glp<hex>`` reads /etc/pam.d/sshd-glp<hex>, created for the test and removed after), by
``su -``, ``runuser``, ``sudo -u`` and a detached job (their system PAM files are bind-mounted, with the hook
line added, in a private mount namespace: the system's files are never changed). Each session's first process
must already be in the groups: EPERM on a 195:N device node, and throttled against a control loop measured at
the same time. A short-lived burner is charged from the accounting group within 2 % of its own CPU; a hook
that fails or hangs never refuses a login.
"""

import json
import os
import secrets
import shlex
import subprocess
import time
from pathlib import Path

import pytest

from collector.charging.deltas import UsageSettings, compute
from collector.charging.samples import parse_sample
from tests.harness.sshd import SSHD, SshdNode, ensure_user, generate_key, remove_user, sshd_available
from tests.probe.support import needs_root, run_node

V1 = "/sys/fs/cgroup"
pytestmark = [
    needs_root,
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.access(V1 + "/cpuacct/cpuacct.usage", os.R_OK) or os.path.isdir("/run/systemd/system")
        or not sshd_available(),
        reason="needs writable cgroup v1 cpu/devices/cpuacct hierarchies without systemd, and sshd",
    ),
]
# What each session runs first: its groups and whether the devices cgroup lets it open the device node.
PROBE = (
    "import json, os, sys\n"
    "groups = dict(line.split(':', 2)[1:] for line in open('/proc/self/cgroup').read().splitlines())\n"
    "try:\n"
    "    os.close(os.open(sys.argv[1], os.O_RDWR)); opened = 'ok'\n"
    "except OSError as error:\n"
    "    opened = os.strerror(error.errno)\n"
    "print(json.dumps({'cpu': groups['cpu'], 'devices': groups['devices'], 'cpuacct': groups['cpuacct'],\n"
    "                  'open': opened}), flush=True)\n"
)
# CPU share of one CPU over two seconds of a busy loop.
BUSY = (
    "import os, time\n"
    "print('ready', flush=True)\n"
    "start, cpu = time.monotonic(), time.process_time()\n"
    "while time.monotonic() - start < 2.0:\n"
    "    pass\n"
    "print((time.process_time() - cpu) / (time.monotonic() - start), flush=True)\n"
)
# Many short processes, one after another, each burning 0.2 s of CPU; then its own and its children's CPU.
BURNER = (
    "import json, os, subprocess, sys, time\n"
    "burn = 'import time\\nwhile time.process_time() < 0.2:\\n    pass\\n'\n"
    "end = time.monotonic() + float(sys.argv[1])\n"
    "while time.monotonic() < end:\n"
    "    subprocess.run([sys.executable, '-c', burn], check=True)\n"
    "t = os.times()\n"
    "print(json.dumps({'cpu_s': t.user + t.system + t.children_user + t.children_system}), flush=True)\n"
)


def _hook_line(node_script, config, extra=""):
    return (f"session optional pam_exec.so quiet seteuid type=open_session{extra} {node_script} --config {config} "
            f"session-open\n")


@pytest.fixture
def user():
    """A login-able test user (home, bash), removed afterwards."""
    name = f"glp-{secrets.token_hex(3)}-s"
    yield ensure_user(name)
    remove_user(name)


@pytest.fixture
def restricted(user, parent, node_script, device):
    """The user blocked and held to 0.2 CPUs (before any of their sessions exists)."""
    name, config = parent
    ppm = 200000 // os.cpu_count()
    for words in (["gpu-block", str(user.pw_uid)], ["quota-set", str(user.pw_uid), str(ppm)]):
        status, result, _ = run_node(node_script, ["--config", str(config)] + words)
        assert status == 0, result
    return user, name, config


def _in_namespace(tmp_path, binds, argv, **kwargs):
    """Run ``argv`` in a private mount namespace where each system PAM file in ``binds`` gets the extra text."""
    script, args = [], []
    for target, extra in binds.items():
        copy = tmp_path / f"pam-{Path(target).name}"
        copy.write_text(Path(target).read_text() + extra)
        args += [str(copy), target]
        script.append(f'mount --bind "${len(args) - 1}" "${len(args)}"')
    shell = " && ".join(script + [f"shift {len(args)}", 'exec "$@"'])
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", shell, "sh",
                           *args, *argv], capture_output=True, text=True, timeout=120, **kwargs)


class PamSshd:
    """A real sshd with UsePAM and a PAM service of its own; ``set_hook`` rewrites that stack."""

    def __init__(self, tmp_path, user):
        self.service = f"sshd-glp{secrets.token_hex(3)}"
        self.pam_file = Path("/etc/pam.d") / self.service
        link_dir = tmp_path / "bin"
        link_dir.mkdir()
        (link_dir / self.service).symlink_to(SSHD)
        self.key = generate_key(tmp_path / "client" / "id_ed25519")
        public = self.key.with_name("id_ed25519.pub").read_text().strip()
        self.set_hook("")
        self.sshd = SshdNode(tmp_path / "sshd", authorized_keys={user.pw_name: [public]},
                             binary=link_dir / self.service, use_pam=True).start()
        self.user = user

    def set_hook(self, line):
        self.pam_file.write_text(f"@include common-account\n{line}@include common-session\n")

    def ssh(self, *command, timeout=60):
        argv = ["ssh", "-F", "/dev/null", "-i", str(self.key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-p", str(self.sshd.port),
                f"{self.user.pw_name}@127.0.0.1", *command]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def close(self):
        self.sshd.stop()
        self.pam_file.unlink(missing_ok=True)


@pytest.fixture
def pam_sshd(tmp_path, user):
    node = PamSshd(tmp_path, user)
    yield node
    node.close()


def _placed(result, uid, parent_name):
    assert result.returncode == 0, result.stdout + result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    group = f"/{parent_name}/user-{uid}"
    assert seen == {"cpu": group, "devices": group, "cpuacct": group, "open": os.strerror(1)}, seen


def test_every_new_session_of_a_restricted_user_is_inside_from_its_first_instruction(
    restricted, node_script, device, pam_sshd, tmp_path, spawn, test_users
):
    user, name, config = restricted
    hook = _hook_line(node_script, config)
    pam_sshd.set_hook(hook)
    probe = ["/usr/bin/python3", "-c", PROBE, device]
    quoted = shlex.join(probe)
    _placed(pam_sshd.ssh(quoted), user.pw_uid, name)
    ways = {
        "su -": ({"/etc/pam.d/su-l": hook}, ["su", "-", user.pw_name, "-c", quoted]),
        "runuser": ({"/etc/pam.d/runuser": hook}, ["runuser", "-u", user.pw_name, "--", *probe]),
        "sudo -u": ({"/etc/pam.d/sudo": hook}, ["sudo", "-u", user.pw_name, "--", *probe]),
    }
    for way, (binds, argv) in ways.items():
        _placed(_in_namespace(tmp_path, binds, argv), user.pw_uid, name), way
    # A detached job, as cron starts one: a PAM session, then a new session id and no terminal.
    job = ["runuser", "-u", user.pw_name, "--", "setsid", "--wait", *probe]
    _placed(_in_namespace(tmp_path, {"/etc/pam.d/runuser": hook}, job, stdin=subprocess.DEVNULL), user.pw_uid, name)
    # Throttled: a busy loop in a new ssh session against a control loop of an unrestricted user, at once.
    control = spawn(test_users[1], ["/usr/bin/python3", "-c", BUSY], ready=True)
    session = pam_sshd.ssh(shlex.join(["/usr/bin/python3", "-c", BUSY]))
    control_share = float(control.stdout.readline())
    share = float(session.stdout.split()[-1])
    print(f"new ssh session of a user held to 0.2 CPUs: {share:.2f} of a CPU; control {control_share:.2f}")
    assert share < 0.6 * control_share and share < 0.3, (share, control_share)


def test_a_short_lived_burner_is_charged_from_the_accounting_group_within_2_percent(
    user, parent, node_script, tmp_path
):
    name, config = parent
    hook = _hook_line(node_script, config)

    def sample():
        status, document, stderr = run_node(node_script, ["--config", str(config), "sample"])
        assert status == 0, stderr
        return parse_sample(json.dumps(document).encode())

    before = sample()
    done = _in_namespace(tmp_path, {"/etc/pam.d/runuser": hook},
                         ["runuser", "-u", user.pw_name, "--", "/usr/bin/python3", "-c", BURNER, "40"])
    assert done.returncode == 0, done.stderr
    measured_ns = json.loads(done.stdout)["cpu_s"] * 1e9
    after = sample()
    usages = compute(before, after, UsageSettings()).usages
    charged = [u for u in usages if u.uid == user.pw_uid and u.resource == "cpu"]
    charged_ns = sum(u.amount_ns for u in charged)
    print(f"short-lived burner: measured {measured_ns / 1e9:.2f} s CPU, charged {charged_ns / 1e9:.2f} s")
    assert [u.method for u in charged] == ["cgroup-cpu-counter"]
    assert abs(charged_ns - measured_ns) <= 0.02 * measured_ns, (charged_ns, measured_ns)


def test_a_failing_or_hanging_hook_never_refuses_or_holds_up_a_login(user, node_script, pam_sshd, tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    # A cgroup tree whose accounting group's cgroup.procs is a FIFO nobody reads: the hook's open() hangs.
    root = tmp_path / "cgroup"
    (root / "cpu").mkdir(parents=True)
    (root / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    group = root / "cpuacct" / "gpuledger" / f"user-{user.pw_uid}"
    group.mkdir(parents=True)
    os.mkfifo(group / "cgroup.procs")
    hanging = tmp_path / "hanging.json"
    hanging.write_text(json.dumps({"cgroup_root": str(root)}))
    for config, bound in ((broken, 10.0), (hanging, 10.0), (tmp_path / "missing" / "node.json", 10.0)):
        pam_sshd.set_hook(_hook_line(node_script, config))
        started = time.monotonic()
        result = pam_sshd.ssh("echo", "logged-in")
        took = time.monotonic() - started
        assert (result.returncode, result.stdout.strip()) == (0, "logged-in"), (config, result.stderr)
        assert took < bound, (config, took)
    # The hanging one was cut off by the node command's alarm (about 2 s), not waited out.
    pam_sshd.set_hook(_hook_line(node_script, hanging))
    started = time.monotonic()
    assert pam_sshd.ssh("true").returncode == 0
    assert 1.5 < time.monotonic() - started < 8.0
