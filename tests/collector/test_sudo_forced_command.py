"""The node account's forced command exactly as docs/conventions.md (Node layout) installs it, end to end.

A real sshd whose authorized_keys line is ``restrict,command="sudo -n <prefix>/bin/gpuledger-node" <key>``,
the conventions' sudoers rule (validated by ``visudo -cf``, installed under /etc/sudoers.d/ for this test
only), a non-root node account, the node command script as the role writes it, the node's own config
(/etc/gpuledger/node.json, or its defaults), and the controller's own SSH transport. The verb travels only
as SSH_ORIGINAL_COMMAND through sudo; a CPU quota set and cleared on a test user must really change the
cgroup v1 files. (tests/rollout reaches the same layout through Ansible, but with OpenSSH's client; the
other collector tests run the node command in its local mode.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from collector.charging.samples import parse_sample
from collector.enforcing.planner import parse_quota
from collector.nodes.transport.ssh import SshSettings, SshTransport
from collector.types import Node
from probe import config as node_config
from probe.constants import DEFAULT_CONFIG_PATH
from tests.harness.sshd import SshdNode, ensure_user, remove_user, sshd_available

ROOT = Path(__file__).resolve().parents[2]
QUOTA_USER = "glc-sudo-quota"
DROP_IN = Path("/etc/sudoers.d/glc-sudo-forced-command")  # no dot in the name: sudo would skip the file
CONFIG = node_config.load(DEFAULT_CONFIG_PATH)
CPU_ROOT = Path(CONFIG.cgroup_root) / "cpu"


def _why_not() -> str | None:
    if not sshd_available():
        return "needs root and openssh-server"
    if shutil.which("sudo") is None or shutil.which("visudo") is None:
        return "needs sudo and visudo"
    if Path("/run/systemd/system").exists() or not (CPU_ROOT / "cpu.cfs_quota_us").is_file():
        return "needs the cgroup v1 backend (no systemd, a cgroup v1 cpu hierarchy)"
    if DROP_IN.exists():
        return f"{DROP_IN} exists already (another run of this test?)"
    return None


pytestmark = [pytest.mark.root, pytest.mark.skipif(_why_not() is not None, reason=_why_not() or "")]


@dataclass(frozen=True)
class Installed:
    """What the node role would have put on the node, in a private prefix."""

    node_command: Path
    known_hosts: Path
    client_key: Path
    node: Node


def _install_node_command(prefix: Path) -> Path:
    """``<prefix>/bin/gpuledger-node`` as roles/gpuledger_node/templates/gpuledger-node.j2 writes it."""
    shutil.copytree(ROOT / "probe", prefix / "lib" / "probe", ignore=shutil.ignore_patterns("__pycache__"))
    command = prefix / "bin" / "gpuledger-node"
    command.parent.mkdir(mode=0o755)
    # The venv's interpreter: the node command needs psutil, which the system Python here lacks.
    command.write_text(f"#!{sys.executable} -I\nimport sys\nsys.path.insert(0, \"{prefix / 'lib'}\")\n"
                       "from probe.node import main\nsys.exit(main())\n")
    os.chmod(command, 0o755)
    return command


def _install_sudoers(staging: Path, account: str, command: Path) -> None:
    """The conventions' two sudoers lines, validated before sudo ever reads them."""
    staged = staging / "sudoers"
    staged.write_text(f'Defaults!{command} env_keep += "SSH_ORIGINAL_COMMAND"\n'
                      f'{account} ALL=(root) NOPASSWD: {command} ""\n')
    subprocess.run(["visudo", "-cf", str(staged)], check=True, capture_output=True)
    os.chmod(staged, 0o440)
    shutil.move(staged, DROP_IN)


@pytest.fixture
def installed(tmp_path: Path, node_user: str, client_key: Path) -> Iterator[Installed]:
    prefix = Path(tempfile.mkdtemp(prefix="glc-node-prefix-", dir="/run"))  # readable by the node account
    os.chmod(prefix, 0o755)
    try:
        command = _install_node_command(prefix)
        _install_sudoers(prefix, node_user, command)
        public = client_key.with_name(client_key.name + ".pub").read_text().strip()
        line = f'restrict,command="sudo -n {command}" {public}'
        with SshdNode(tmp_path / "sshd", authorized_keys={node_user: [line]}) as sshd:
            known_hosts = tmp_path / "known_hosts"
            known_hosts.write_text(sshd.known_hosts_line() + "\n")
            yield Installed(command, known_hosts, client_key, Node("sudo-node", "127.0.0.1", port=sshd.port,
                                                                    ssh_user=node_user))
    finally:
        DROP_IN.unlink(missing_ok=True)
        shutil.rmtree(prefix, ignore_errors=True)


@pytest.fixture
def quota_uid() -> Iterator[int]:
    parent = CPU_ROOT / CONFIG.cgroup_parent
    parent_existed = parent.exists()
    uid = ensure_user(QUOTA_USER).pw_uid
    yield uid
    group = parent / f"user-{uid}"
    if group.exists():  # a failed test must not leave the quota behind: hand its processes back, then remove it
        for pid in (group / "cgroup.procs").read_text().split():
            (CPU_ROOT / "cgroup.procs").write_text(pid)
        group.rmdir()
    if not parent_existed and parent.exists():
        try:
            parent.rmdir()
        except OSError:
            pass  # someone else's groups are in it now
    remove_user(QUOTA_USER)


def _boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def _reply(stdout: bytes) -> dict[str, object]:
    reply = json.loads(stdout)
    assert isinstance(reply, dict)
    return reply


@pytest.mark.anyio
async def test_sample_and_quota_over_the_sudo_forced_command(installed: Installed, quota_uid: int) -> None:
    transport = SshTransport(SshSettings(installed.client_key, installed.known_hosts))
    group = CPU_ROOT / CONFIG.cgroup_parent / f"user-{quota_uid}"
    try:
        session = await transport.session(installed.node)
        sampled = await session.run(["sample"], timeout_s=60)
        assert sampled.ok, sampled.stderr
        sample = parse_sample(sampled.stdout)
        assert sample.boot_id == _boot_id()

        # 10 % of the node's CPUs: Q = floor(PPM x cpus x 100000 / 1e6) us per 100 ms (docs/node-command.md).
        cpus = os.cpu_count() or 1
        applied = await session.run(["quota-set", str(quota_uid), "100000"], timeout_s=60)
        assert applied.ok, applied.stdout + applied.stderr.encode()
        assert _reply(applied.stdout)["backend"] == "cgroup-v1"
        assert (group / "cpu.cfs_quota_us").read_text().strip() == str(max(1000, 100000 * cpus // 10))
        assert (group / "cpu.cfs_period_us").read_text().strip() == "100000"
        assert parse_quota((await session.run(["quota-get", str(quota_uid)], timeout_s=60)).stdout) == 100000

        cleared = await session.run(["quota-clear", str(quota_uid)], timeout_s=60)
        assert cleared.ok, cleared.stdout + cleared.stderr.encode()
        assert not group.exists()

        # Anything but the one verb is refused by the node command, whatever the shell would make of it.
        refused = await session.run(["quota-set", str(quota_uid), "100000; id"], timeout_s=60)
        assert not refused.ok and not group.exists()
    finally:
        await transport.aclose()


def _render_sshd_dropin(account: str, authorized_keys: Path, command: Path) -> str:
    """roles/gpuledger_node/templates/sshd-dropin.conf.j2 with the role's variables for this test's layout."""
    import jinja2

    template = (ROOT / "roles" / "gpuledger_node" / "templates" / "sshd-dropin.conf.j2").read_text()
    return jinja2.Template(template, undefined=jinja2.StrictUndefined).render(
        ansible_managed="test", gpuledger_node_account=account, __gpuledger_node_authorized_keys=str(authorized_keys),
        __gpuledger_node_command=str(command),
    )


def test_a_key_line_without_options_still_gets_only_the_node_command(
    tmp_path: Path, node_user: str, client_key: Path
) -> None:
    """The role's sshd drop-in alone confines the account: a bare key line (no restrict, no command=) opens
    no shell and runs nothing but the node command, which refuses what the client asked for."""
    prefix = Path(tempfile.mkdtemp(prefix="glc-node-prefix-", dir="/run"))
    os.chmod(prefix, 0o755)
    try:
        command = _install_node_command(prefix)
        _install_sudoers(prefix, node_user, command)
        sshd = SshdNode(tmp_path / "sshd")
        keys = sshd.keys_dir / node_user
        dropin = tmp_path / "50-gpuledger.conf"
        dropin.write_text(_render_sshd_dropin(node_user, keys, command))
        sshd.extra_config.append(f"Include {dropin}")
        sshd.set_authorized_keys(node_user, [client_key.with_name(client_key.name + ".pub").read_text().strip()])
        with sshd:
            base = ["ssh", "-F", "/dev/null", "-i", str(client_key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                    "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-p", str(sshd.port),
                    f"{node_user}@127.0.0.1"]
            for asked in (["echo shell-$((6*7))"], []):
                done = subprocess.run([*base, "-T", *asked], capture_output=True, text=True, timeout=60,
                                      stdin=subprocess.DEVNULL)
                assert "shell-42" not in done.stdout, done.stdout + done.stderr + sshd.log()[-2000:]
                assert done.returncode == 2 and json.loads(done.stdout)["error"]["kind"] == "refused", done.stdout
            version = subprocess.run([*base, "version"], capture_output=True, text=True, timeout=60,
                                     stdin=subprocess.DEVNULL)
            assert version.returncode == 0 and json.loads(version.stdout)["verb"] == "version", version.stderr
    finally:
        DROP_IN.unlink(missing_ok=True)
        shutil.rmtree(prefix, ignore_errors=True)
