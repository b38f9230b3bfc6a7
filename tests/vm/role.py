"""The node role (playbooks/nodes.yml) run against a VM node with the role's production paths.

Unlike tests/rollout (sshd processes on this machine, every path moved under /run), the node here is the guest itself:
/opt/gpuledger, /etc/ssh/sshd_config.d, ``systemctl reload ssh``, /etc/pam.d. The controller of the play is this
machine over Ansible's local connection, its config directory under the basetemp: nodes.yml only reads its public
key and writes its inventory and known_hosts.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.harness.sshd import generate_key
from tests.harness.vm import VmNode
from tests.rollout.lab import REPO, VENV_BIN, Recap, build_node_wheelhouse, parse_recap


class RoleRun:
    def __init__(self, node: VmNode, workdir: Path) -> None:
        self.node = node
        self.workdir = workdir
        node_wheels = build_node_wheelhouse(workdir)
        controller_dir = workdir / "controller"
        generate_key(controller_dir / "ssh" / "id_ed25519", comment="gpuledger-controller")
        self.controller_dir = controller_dir
        self.controller_key = controller_dir / "ssh" / "id_ed25519"
        self.inventory = workdir / "inventory.yml"
        # Ansible passes the key itself; the rest are the lab's options: the node's host key pinned.
        options = node.ssh_options()
        key_at = options.index("-i")
        ssh_args = " ".join(options[:key_at] + options[key_at + 2:])
        self.inventory.write_text(json.dumps({"all": {"children": {
            "gpuledger_controller": {"hosts": {"controller-1": {
                "ansible_connection": "local", "ansible_python_interpreter": str(VENV_BIN / "python"),
                "gpuledger_controller_config_dir": str(controller_dir),
            }}},
            "gpuledger_nodes": {"hosts": {node.name: {
                "ansible_host": "127.0.0.1", "ansible_port": node.port, "ansible_user": "root",
                "ansible_ssh_private_key_file": str(node.client_key), "ansible_ssh_common_args": ssh_args,
                "ansible_python_interpreter": "/usr/bin/python3",
                "gpuledger_node_gpu": False, "gpuledger_node_wheelhouse": str(node_wheels),
            }}},
        }}}))

    def playbook(self, *args: str, playbook: str = "nodes.yml") -> Recap:
        env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_HOME=str(self.workdir / "ansible"),
                   ANSIBLE_NOCOLOR="1", PATH=f"{VENV_BIN}:{os.environ.get('PATH', '')}")
        result = subprocess.run(
            [str(VENV_BIN / "ansible-playbook"), "-i", str(self.inventory), str(REPO / "playbooks" / playbook),
             *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=1200, stdin=subprocess.DEVNULL,
        )
        output = result.stdout + result.stderr
        return Recap(result.returncode, output, parse_recap(output))
