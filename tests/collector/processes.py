"""Controllers as real processes (``gpuledger controller run``), for crash and failover tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.collector.harness import ROOT, SimNode


def write_inventory(path: Path, nodes: list[str]) -> Path:
    path.write_text("[gpu]\n" + "".join(f"{name} ansible_connection=local\n" for name in nodes))
    return path


def controller_env(database_url: str, inventory: Path, node: SimNode, tick_s: float = 1.0) -> dict[str, str]:
    # The NVML fake's fixture travels in argv (``env``), as the local transport passes no other variables.
    command = (
        f"env GPULEDGER_NVML_FAKE={node.fixture_path} PYTHONPATH={ROOT}"
        f" {sys.executable} -m tests.probe.fake_node --config {node.config_path}"
    )
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "GPULEDGER_DATABASE_URL": database_url,
        "GPULEDGER_INVENTORY": str(inventory),
        "GPULEDGER_TICK_SECONDS": str(tick_s),
        "GPULEDGER_LOCAL_NODE_COMMAND": command,
        "GPULEDGER_KILL_GRACE_SECONDS": "0",
    }


def start_controller(env: dict[str, str], log: Path, *extra: str) -> subprocess.Popen[bytes]:
    handle = open(log, "ab")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "gpuledger.cli", "controller", "run", *extra],
            cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    finally:
        handle.close()
