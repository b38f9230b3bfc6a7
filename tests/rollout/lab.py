"""A throwaway lab for the rollout tests: this machine as two nodes and a controller, reached over real SSH.

Each node is a real ``sshd`` on loopback (tests/harness/sshd.py) that also reads the node role's drop-in
directory. Ansible logs in as the ``gla-deploy`` test user with passwordless sudo and runs the playbooks against
``inventory/test``, whose variables point every path the roles write under one directory in /run (sshd's
StrictModes wants root-owned, non-writable parents, which pytest's private temporary tree is not). The only
changes outside it are the ``gla-`` users and one sudoers file, and ``close()`` removes them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

from tests.harness.sshd import SshdNode, ensure_user, generate_key, remove_user

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
INVENTORY = REPO / "inventory" / "test"
DEPLOY_USER = "gla-deploy"
NODES = ("node-a", "node-b")
NODE_ACCOUNTS = tuple(f"gla-{node}" for node in NODES)
CONTROLLER_USER = "gla-controller"
OLDEST_PYTHON = Path("/root/.pyenv/versions/3.8.18/bin/python3.8")
SUDOERS = Path("/etc/sudoers.d/gla-rollout")
# The database role's backup paths under the lab's root, and no systemd to start its timer (as for the controller).
LAB_VARS = Path(__file__).with_name("lab-vars.yml")
_RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)


@dataclass(frozen=True)
class Recap:
    """``ansible-playbook``'s exit status, output and per-host PLAY RECAP counts."""

    rc: int
    output: str
    hosts: dict[str, dict[str, int]]

    def total(self, key: str) -> int:
        return sum(counts[key] for counts in self.hosts.values())

    def explain(self) -> str:
        return f"ansible-playbook exited {self.rc}\n{self.output[-12000:]}"


def parse_recap(output: str) -> dict[str, dict[str, int]]:
    return {
        host: {"ok": int(ok), "changed": int(changed), "unreachable": int(unreachable), "failed": int(failed)}
        for host, ok, changed, unreachable, failed in _RECAP.findall(output)
    }


def _run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]


_PIP = [str(VENV_BIN / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]


def build_node_wheelhouse(workdir: Path) -> Path:
    """The node wheelhouse: psutil and nvidia-ml-py for Python 3.8 and 3.11."""
    node = workdir / "wheels-node"
    for python in ("3.8", "3.11"):
        _run([*_PIP, "download", "-d", str(node), "--only-binary=:all:", "--python-version", python,
              "psutil>=5.9", "nvidia-ml-py>=12"])
    return node


def build_wheelhouses(workdir: Path) -> tuple[Path, Path]:
    """The node wheelhouse and the controller's (gpuledger + deps)."""
    node = build_node_wheelhouse(workdir)
    # The wheel is built from a copy, so the checkout gets no build/ or egg-info from this.
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    source = workdir / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]:
        name = pattern.rstrip("*")
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    controller = workdir / "wheels-controller"
    _run([*_PIP, "wheel", "--no-deps", "-w", str(controller), str(source)])
    # With the pins the role installs with (gpuledger_controller_constraints), as the runbook builds it.
    _run([*_PIP, "download", "-d", str(controller), "--only-binary=:all:", "-c", str(REPO / "constraints.txt"),
          *project["project"]["dependencies"]])
    return node, controller


class Lab:
    """Start with ``Lab(pg_port, wheelhouses).start()``; always ``close()``."""

    def __init__(self, pg_port: int, db_name: str, wheelhouses: tuple[Path, Path], pg_bindir: Path) -> None:
        self.pg_port = pg_port
        self.pg_bindir = pg_bindir
        self.db_name = db_name
        self.node_wheels, self.controller_wheels = wheelhouses
        self.root = Path(tempfile.mkdtemp(prefix="gla-rollout-", dir="/run"))
        os.chmod(self.root, 0o755)
        self.sshd: dict[str, SshdNode] = {}

    def node_root(self, node: str) -> Path:
        return self.root / node

    def start(self) -> Lab:
        ensure_user(DEPLOY_USER)
        deploy = self.root / "deploy"
        deploy.mkdir(mode=0o700)
        key = generate_key(deploy / "id_ed25519", comment="gla-deploy")
        public = key.with_name("id_ed25519.pub").read_text().strip()
        includes = []
        for node in NODES:
            sudoers_dir = self.node_root(node) / "etc" / "sudoers.d"
            sudoers_dir.mkdir(parents=True, mode=0o755)
            # Directories every Debian node has, which the role therefore does not create.
            for path in ("etc/ssh/sshd_config.d", "etc/profile.d", "usr/local/bin", "etc/pam.d"):
                (self.node_root(node) / path).mkdir(parents=True, mode=0o755)
            for name in ("common-session", "common-session-noninteractive"):
                (self.node_root(node) / "etc" / "pam.d" / name).write_text("session required pam_unix.so\n")
            includes.append(f"@includedir {sudoers_dir}")
        (self.root / "controller" / "etc" / "systemd" / "system").mkdir(parents=True)
        (self.root / "controller" / "usr" / "local" / "sbin").mkdir(parents=True)
        (self.root / "controller" / "var" / "backups").mkdir(parents=True)
        # The console's certificate, as an admin hands it to the controller role (files on the control host).
        tls = self.root / "tls"
        tls.mkdir(mode=0o700)
        _run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
              "-keyout", str(tls / "key.pem"), "-out", str(tls / "cert.pem"), "-days", "2", "-subj",
              "/CN=controller-1.lab.example"])
        rules = "\n".join([f"{DEPLOY_USER} ALL=(ALL) NOPASSWD: ALL", *includes]) + "\n"
        candidate = self.root / "sudoers.candidate"
        candidate.write_text(rules)
        _run(["visudo", "-cf", str(candidate)])
        SUDOERS.write_text(rules)
        os.chmod(SUDOERS, 0o440)
        for node in NODES:
            dropins = self.node_root(node) / "etc" / "ssh" / "sshd_config.d"
            self.sshd[node] = SshdNode(
                self.node_root(node) / "sshd",
                authorized_keys={DEPLOY_USER: [public]},
                # Ansible copies files over SFTP, as it would to a real node.
                extra_config=["Subsystem sftp internal-sftp", f"Include {dropins}/*.conf"],
            ).start()
        (deploy / "known_hosts").write_text("".join(n.known_hosts_line() + "\n" for n in self.sshd.values()))
        return self

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
            ANSIBLE_HOME=str(self.root / "ansible-home"),
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_FORCE_COLOR="0",
            PATH=f"{VENV_BIN}:{env.get('PATH', '')}",
            GLA_ROOT=str(self.root),
            GLA_DEPLOY_USER=DEPLOY_USER,
            GLA_NODE_A_PORT=str(self.sshd["node-a"].port),
            GLA_NODE_B_PORT=str(self.sshd["node-b"].port),
            GLA_NODE_A_PYTHON=str(OLDEST_PYTHON),
            GLA_PG_PORT=str(self.pg_port),
            GLA_DB_NAME=self.db_name,
            GLA_NODE_WHEELHOUSE=str(self.node_wheels),
            GLA_CONTROLLER_WHEELHOUSE=str(self.controller_wheels),
            GLA_PG_BINDIR=str(self.pg_bindir),
        )
        return env

    def playbook(self, name: str, *args: str) -> Recap:
        result = subprocess.run(
            [str(VENV_BIN / "ansible-playbook"), "-i", str(INVENTORY), "-e", f"@{LAB_VARS}",
             str(REPO / "playbooks" / name), *args],
            cwd=REPO, env=self.environment(), capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
        )
        output = result.stdout + result.stderr
        return Recap(result.returncode, output, parse_recap(output))

    def close(self) -> None:
        for node in self.sshd.values():
            node.stop()
        for user in (*NODE_ACCOUNTS, CONTROLLER_USER, DEPLOY_USER):
            remove_user(user)
        SUDOERS.unlink(missing_ok=True)
        shutil.rmtree(self.root, ignore_errors=True)
