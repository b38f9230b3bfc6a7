"""Real ansible-playbook runs against the lab: converge, converge again, check, reach the node, retire a node.

The tests share one rollout (the ``rolled_out`` fixture) and run in file order; the retirement test comes last.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from tests.harness.sshd import ensure_user, remove_user
from tests.rollout.lab import REPO, Lab, Recap

# The first test's setup is the whole first rollout (rolled_out), over 300 s on a busy two-core machine.
pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(900)]
HOSTS = {"controller-1", "node-a", "node-b"}


def _controller_ssh(lab: Lab, node: str, command: str | None, *options: str,
                    known_hosts: Path | None = None) -> subprocess.CompletedProcess[str]:
    """ssh as the controller does it: its generated key, the known_hosts the rollout wrote, no host-key learning."""
    config = lab.root / "controller" / "etc" / "gpuledger" / "ssh"
    return subprocess.run(
        ["ssh", "-F", "/dev/null", "-i", str(config / "id_ed25519"), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
         "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts or config / 'known_hosts'}",
         "-p", str(lab.sshd[node].port), *options, f"gla-{node}@127.0.0.1", *([command] if command else [])],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )


def _mode(path: Path) -> tuple[int, int, int]:
    info = path.stat()
    return info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)


def test_first_run_installs_everything(rolled_out: Recap) -> None:
    assert set(rolled_out.hosts) == HOSTS, rolled_out.explain()
    for host, counts in rolled_out.hosts.items():
        assert counts["failed"] == counts["unreachable"] == 0, rolled_out.explain()
        assert counts["changed"] > 0, f"{host} changed nothing on a fresh lab\n{rolled_out.explain()}"


def test_second_run_changes_nothing(lab: Lab, rolled_out: Recap) -> None:
    again = lab.playbook("site.yml")
    assert again.rc == 0, again.explain()
    assert set(again.hosts) == HOSTS
    assert again.total("changed") == 0, again.explain()


def test_check_diff_run_is_clean(lab: Lab, rolled_out: Recap) -> None:
    check = lab.playbook("site.yml", "--check", "--diff")
    assert check.rc == 0, check.explain()
    assert check.total("changed") == 0 and check.total("failed") == 0, check.explain()


def test_controller_key_reaches_the_node_command_and_gets_a_sample(lab: Lab, rolled_out: Recap) -> None:
    for node in ("node-a", "node-b"):
        result = _controller_ssh(lab, node, "sample")
        assert result.returncode == 0, result.stderr + lab.sshd[node].log()[-3000:]
        sample = json.loads(result.stdout)
        assert sample["schema_version"] == 1
        assert sample["node"]["boot_id"] == Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def test_controller_verifies_the_node_with_its_own_config(lab: Lab, rolled_out: Recap) -> None:
    """``gpuledger nodes test`` from the installed virtualenv, with the inventory, key and known_hosts it got."""
    config = lab.root / "controller" / "etc" / "gpuledger"
    env = {"PATH": os.environ["PATH"], "GPULEDGER_SSH_KEY": str(config / "ssh" / "id_ed25519"),
           "GPULEDGER_DATABASE_URL_FILE": str(config / "secrets" / "database_url")}
    for line in (config / "controller.env").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    result = subprocess.run([str(lab.root / "controller" / "opt" / "venv" / "bin" / "gpuledger"), "nodes", "test",
                             "node-b"], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert env["GPULEDGER_DRY_RUN"] == "true"


def test_confined_key_opens_no_shell_and_runs_nothing_else(lab: Lab, rolled_out: Recap) -> None:
    terminal = _controller_ssh(lab, "node-a", None, "-tt")
    assert terminal.returncode == 255 and "PTY allocation request failed" in terminal.stderr, terminal.stderr
    login = _controller_ssh(lab, "node-a", None, "-T")
    assert login.returncode == 2 and json.loads(login.stdout)["error"]["kind"] == "refused", login.stdout + login.stderr
    for command in ("bash", "cat /etc/shadow", "sample; id"):
        other = _controller_ssh(lab, "node-a", command)
        assert other.returncode == 2 and json.loads(other.stdout)["error"]["kind"] == "refused", command
    forwarding = _controller_ssh(lab, "node-a", "version", "-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:22")
    assert forwarding.returncode == 255, forwarding.stdout + forwarding.stderr
    home = lab.node_root("node-a") / "home"
    assert _mode(home / ".ssh" / "authorized_keys") == (0, 0, 0o644)
    assert _mode(home) == (0, 0, 0o755)
    assert _mode(lab.node_root("node-a") / "etc" / "sudoers.d" / "gpuledger") == (0, 0, 0o440)


def test_controller_units_are_hardened_and_hold_no_secrets(lab: Lab, rolled_out: Recap) -> None:
    config = lab.root / "controller" / "etc" / "gpuledger"
    for name in ("database_url", "admin_database_url"):
        assert _mode(config / "secrets" / name) == (0, 0, 0o600)
    for name in ("tls_cert", "tls_key"):
        assert _mode(config / "secrets" / name) == (0, 0, 0o600)
    assert (config / "secrets" / "tls_key").read_bytes() == (lab.root / "tls" / "key.pem").read_bytes()
    assert "app-secret" not in (config / "controller.env").read_text()
    assert _mode(config / "ssh" / "id_ed25519") == (0, 0, 0o600)
    units = lab.root / "controller" / "etc" / "systemd" / "system"
    for unit in ("gpuledger-controller.service", "gpuledger-api.service"):
        text = (units / unit).read_text()
        assert "LoadCredential=database_url:" in text and "app-secret" not in text
        serves = unit == "gpuledger-api.service"  # only the API's unit gets the TLS files
        assert (f"LoadCredential=tls_key:{config}/secrets/tls_key" in text) is serves
        assert ("Environment=GPULEDGER_API_TLS_CERT_FILE=%d/tls_cert" in text) is serves
        report = subprocess.run(["systemd-analyze", "security", "--offline=true", "--threshold=20", str(units / unit)],
                                capture_output=True, text=True)
        assert report.returncode == 0, report.stdout + report.stderr


def _systemd_environment_file(path: Path) -> dict[str, str]:
    """KEY=value and KEY="value" lines, as systemd reads the role's settings file (backslash escapes in quotes)."""
    values = {}
    for line in path.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        if value.startswith('"') and value.endswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        values[key] = value
    return values


def test_database_backup_units_and_script_are_installed_and_dump_the_lab_database(
    lab: Lab, rolled_out: Recap, tmp_path: Path,
) -> None:
    """The timer's files are in place, and the installed script with the settings the role wrote makes a dump."""
    controller = lab.root / "controller"
    units = controller / "etc" / "systemd" / "system"
    timer = (units / "gpuledger-db-backup.timer").read_text()
    assert "OnCalendar=*-*-* 03:15:00\n" in timer and "Persistent=true" in timer
    service = (units / "gpuledger-db-backup.service").read_text()
    script = controller / "usr" / "local" / "sbin" / "gpuledger-db-backup"
    assert "Type=oneshot" in service and f"ExecStart={script}\n" in service
    assert _mode(script) == (0, 0, 0o755)
    backups = controller / "var" / "backups" / "gpuledger"
    assert _mode(backups) == (0, 0, 0o700)
    settings = controller / "etc" / "gpuledger" / "db-backup.env"
    assert _mode(settings) == (0, 0, 0o600)
    environment = _systemd_environment_file(settings)
    assert environment["GPULEDGER_BACKUP_DIR"] == str(backups)
    conninfo = environment["GPULEDGER_BACKUP_CONNINFO"]
    assert conninfo.endswith(f" dbname={lab.db_name} application_name=gpuledger-db-backup"), conninfo
    result = subprocess.run([str(script)], env={"PATH": os.environ["PATH"], **environment},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    [dump] = list(backups.iterdir())
    listing = subprocess.run([str(lab.pg_bindir / "pg_restore"), "--list", str(dump)],
                             capture_output=True, text=True, check=True)
    assert "SCHEMA - ledger" in listing.stdout and f"dbname: {lab.db_name}" in listing.stdout.replace(";", "")
    dump.unlink()


def test_hook_is_configured_for_the_node(lab: Lab, rolled_out: Recap) -> None:
    etc = lab.node_root("node-b") / "etc"
    hook = (etc / "profile.d" / "gpuledger.sh").read_text()
    assert f"    __gl_status_dir={lab.node_root('node-b')}/run/status\n" in hook
    spool = lab.node_root("node-b") / "var" / "spool" / "gpuledger" / "web-login"
    assert f"    __gl_web_login_dir={spool}\n" in hook
    assert "    __gl_console_url=https://controller-1.lab.example:8470/login\n" in hook
    assert _mode(spool) == (0, 0, 0o1733)
    node_config = json.loads((etc / "gpuledger" / "node.json").read_text())
    assert node_config["web_login_dir"] == str(spool)
    balance = (lab.node_root("node-b") / "usr" / "local" / "bin" / "gpuledger-balance").read_text()
    assert f"hook={etc}/profile.d/gpuledger.sh\n" in balance
    box = lab.node_root("node-b") / "var" / "spool" / "gpuledger" / "gpu-requests"
    assert _mode(box) == (0, 0, 0o1733) and node_config["gpu_request_dir"] == str(box)
    assert node_config["gpu_request_hold_dir"] == f"{box}.held"  # made by the node command, beside the box
    gpu_request = lab.node_root("node-b") / "usr" / "local" / "bin" / "gpu-request"
    assert _mode(gpu_request) == (0, 0, 0o755)
    assert f'REQUEST_DIR = "{box}"\n' in gpu_request.read_text()
    assert f'STATUS_DIR = "{lab.node_root("node-b")}/run/status"\n' in gpu_request.read_text()
    assert f". {etc}/profile.d/gpuledger.sh; fi" in (etc / "bash.bashrc").read_text()


def test_a_gpu_node_without_a_driver_is_refused_with_a_clear_reason(lab: Lab, rolled_out: Recap) -> None:
    recap = lab.playbook("nodes.yml", "--limit", "controller-1,node-a", "-e", "gpuledger_node_gpu=true")
    assert recap.rc != 0
    assert recap.hosts["node-a"]["failed"] == 1 and recap.hosts["node-a"]["changed"] == 0, recap.explain()
    assert "lacks: the NVIDIA driver" in recap.output, recap.explain()


def test_the_controller_is_not_installed_without_its_constraints_file(lab: Lab, rolled_out: Recap) -> None:
    missing = lab.root / "no-constraints.txt"
    recap = lab.playbook("controller.yml", "--tags", "gpuledger_controller_install",
                         "-e", f"gpuledger_controller_constraints={missing}")
    assert recap.rc != 0 and recap.hosts["controller-1"]["failed"] == 1, recap.explain()
    assert recap.hosts["controller-1"]["changed"] == 0, recap.explain()
    assert f"{missing} is not a file on the control host" in recap.output, recap.explain()


def test_the_controller_installs_with_the_repository_constraints(lab: Lab, rolled_out: Recap) -> None:
    copy = lab.root / "controller" / "opt" / "constraints.txt"
    assert copy.read_text() == (REPO / "constraints.txt").read_text()
    pins = dict(line.split("==") for line in copy.read_text().splitlines() if "==" in line)
    python = lab.root / "controller" / "opt" / "venv" / "bin" / "python"
    for name in ("SQLAlchemy", "asyncssh", "starlette"):
        read = f"import importlib.metadata as m; print(m.version({name!r}))"
        installed = subprocess.run([str(python), "-I", "-c", read], capture_output=True, text=True,
                                   check=True).stdout.strip()
        assert installed == pins[name], name


def test_an_sshd_drop_in_that_sshd_would_not_apply_is_rolled_back(lab: Lab, rolled_out: Recap) -> None:
    """A main sshd_config without the drop-in Include: the node fails, and the drop-in it wrote is taken back out."""
    node = lab.node_root("node-a")
    dropin = node / "etc" / "ssh" / "sshd_config.d" / "50-gpuledger.conf"
    installed = dropin.read_text()
    config = lab.sshd["node-a"].config_path
    without_include = lab.root / "sshd_config.without-include"
    without_include.write_text("".join(line for line in config.read_text().splitlines(keepends=True)
                                       if not line.startswith("Include ")))
    dropin.unlink()
    try:
        recap = lab.playbook("nodes.yml", "--limit", "controller-1,node-a",
                             "-e", f"gpuledger_node_sshd_config={without_include}")
        assert recap.rc != 0 and recap.hosts["node-a"]["failed"] == 1, recap.explain()
        assert "does not include" in recap.output and "rolled back" in recap.output, recap.explain()
        assert not dropin.exists()
    finally:
        # force_handlers reloaded sshd after the rollback (harmless: its previous config); reload it with the drop-in.
        dropin.write_text(installed)
        os.chmod(dropin, 0o644)
        os.kill(int((config.parent / "sshd.pid").read_text()), signal.SIGHUP)
    for _ in range(50):
        if _controller_ssh(lab, "node-a", "version").returncode == 0:
            break
        time.sleep(0.2)
    else:
        pytest.fail("node-a does not take the controller's key again after sshd's reload")


def test_retiring_a_node_lifts_enforcement_revokes_the_key_and_removes_everything(
    lab: Lab, rolled_out: Recap,
) -> None:
    """The controller throttles a user on node-b, then node-b is retired: the quota goes with it."""
    user = ensure_user("gla-user")
    # Over SSH the node command reads only /etc/gpuledger/node.json (absent here: the defaults), so the default group.
    cpu_group = Path("/sys/fs/cgroup/cpu/gpuledger") / f"user-{user.pw_uid}"
    try:
        quota = _controller_ssh(lab, "node-b", f"quota-set {user.pw_uid} 100000")
        assert quota.returncode == 0, quota.stdout + quota.stderr
        assert (cpu_group / "cpu.cfs_quota_us").read_text().strip() != "-1"

        recap = lab.playbook("remove-node.yml", "-e", "gpuledger_retire=node-b")
        assert recap.rc == 0, recap.explain()
        assert not cpu_group.exists()
        pinned = lab.root / "node-b.known_hosts"
        pinned.write_text(lab.sshd["node-b"].known_hosts_line() + "\n")
        refused = _controller_ssh(lab, "node-b", "version", known_hosts=pinned)
        assert refused.returncode == 255 and "Permission denied" in refused.stderr, refused.stderr
        with pytest.raises(KeyError):
            pwd.getpwnam("gla-node-b")
        root = lab.node_root("node-b")
        for gone in ("opt/gpuledger", "home", "etc/sudoers.d/gpuledger", "etc/ssh/sshd_config.d/50-gpuledger.conf",
                     "etc/profile.d/gpuledger.sh", "usr/local/bin/gpuledger-balance", "etc/gpuledger/node.json",
                     "var/spool/gpuledger/web-login", "usr/local/bin/gpu-request", "var/spool/gpuledger/gpu-requests",
                     "var/spool/gpuledger/gpu-requests.held"):
            assert not (root / gone).exists(), gone
        assert "gpuledger" not in (root / "etc" / "bash.bashrc").read_text()
        config = lab.root / "controller" / "etc" / "gpuledger"
        assert f":{lab.sshd['node-b'].port}]" not in (config / "ssh" / "known_hosts").read_text()
        assert "node-b" not in (config / "inventory.yml").read_text()
        assert _controller_ssh(lab, "node-a", "version").returncode == 0
    finally:
        remove_user("gla-user")
        for group in (cpu_group, cpu_group.parent):
            if group.exists():
                try:
                    group.rmdir()
                except OSError:  # the parent may hold other tests' groups
                    pass
