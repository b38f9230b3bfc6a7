"""Install the probe on a VM node over SSH as the node role does (roles/gpuledger_node/tasks/install.yml).

The same archive (tar of ``probe/``, root-owned, no caches), unpacked into ``/opt/gpuledger/lib``, byte-compiled, and
the node command of the role's template, run by the system Python 3.11 (the probe imports only the standard library;
psutil and nvidia-ml-py are not needed on a node without GPUs). The config is the empty document: every key at its
default, as docs/node-command.md describes. What this leaves out of the role (the ``gpuledger`` account, sudoers,
sshd drop-in, PAM hook) is what the role test converges for real.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from tests.harness.vm import REPO, VmNode

PREFIX = "/opt/gpuledger"
COMMAND = f"{PREFIX}/bin/gpuledger-node"
_NODE_COMMAND = f"""#!/usr/bin/python3 -I
import sys
sys.path.insert(0, "{PREFIX}/lib")
from probe.node import main
sys.exit(main())
"""


def install_probe(node: VmNode, workdir: Path) -> None:
    archive = workdir / "probe.tar"
    subprocess.run(
        ["tar", "--create", "--format=gnu", "--sort=name", "--owner=0", "--group=0", "--numeric-owner",
         "--mode=u=rwX,go=rX", "--exclude=__pycache__", "--exclude=*.pyc", f"--file={archive}",
         f"--directory={REPO}", "probe"],
        check=True, capture_output=True,
    )
    node.ssh("root", f"install -d -m 0755 {PREFIX}/bin {PREFIX}/lib /etc/gpuledger")
    node.push(archive, "/tmp/probe.tar")
    node.ssh("root", f"tar -xf /tmp/probe.tar -C {PREFIX}/lib && rm /tmp/probe.tar"
             f" && python3 -I -m compileall -q {PREFIX}/lib/probe && echo '{{}}' > /etc/gpuledger/node.json")
    node.ssh("root", f"cat > {COMMAND} && chmod 0755 {COMMAND}", stdin=_NODE_COMMAND.encode())


def node_command(node: VmNode, verb: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run one verb as the controller does: sshd's forced command sees it in SSH_ORIGINAL_COMMAND, in SSH mode."""
    return node.ssh("root", f"SSH_ORIGINAL_COMMAND={shlex.quote(verb)} {COMMAND}", check=check)
