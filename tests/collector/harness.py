"""A small cluster for controller tests: real node commands, real processes, real cgroups, real PostgreSQL.

Each ``SimNode`` is the real node command (``tests.probe.fake_node``: the probe with the NVML fake) with
its own config (status directory, cgroup parent) and its own NVML fixture file, which a test rewrites to
put real processes of real test users on fake GPUs. Nodes are reached through the local transport or
through a real sshd (``tests.harness.sshd``) whose forced command runs the node command as root through
sudo, exactly as the rollout installs it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pynvml
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, create_engine, text

from collector.anchor import AnchorLog
from collector.charging.deltas import UsageSettings
from collector.charging.posting import Charger
from collector.config import TierPolicy
from collector.metrics import Metrics
from collector.nodes.transport.abc import Transport
from collector.nodes.transport.local import LocalTransport
from collector.tick import Controller
from collector.types import Node, QueueSettings, TickSettings, TickSummary
from ledger.config import LedgerConfig
from ledger.environ import Secret
from ledger.money import MICRO
from ledger.service import Ledger
from tests.collector.conftest import Database
from tests.harness.sshd import ensure_user, remove_user

ROOT = Path(__file__).resolve().parents[2]
GPU_MODEL = "NVIDIA A100-SXM4-80GB"
# 0.36 per GPU-hour = 100 micro per GPU-second; 0.036 per core-hour = 10 micro per core-second: exact rates.
GPU_PRICE = (Decimal("0.36"), Decimal(3600))
CPU_PRICE = (Decimal("0.036"), Decimal(3600))

def linux_user_fixture(name: str) -> Callable[[], Iterator[int]]:
    """A module-scoped fixture giving the uid of the test user ``name``, created first and removed after."""
    @pytest.fixture(scope="module")
    def user() -> Iterator[int]:
        uid = ensure_user(name).pw_uid
        yield uid
        remove_user(name)
    return user



@dataclass
class SimNode:
    """One simulated node's files: node config, NVML fixture, status directory."""

    name: str
    directory: Path
    gpus: tuple[str, ...] = ("GPU-glc-0", "GPU-glc-1")
    gpu_processes: dict[str, list[tuple[int, int]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o755)
        self.status_dir = self.directory / "status"
        self.config_path.write_text(json.dumps({
            "status_dir": str(self.status_dir), "cgroup_parent": f"glc-{self.name}", "kill_grace_seconds": 1,
        }))
        os.chmod(self.config_path, 0o644)
        self.write_fixture()

    @property
    def config_path(self) -> Path:
        return self.directory / "node.json"

    @property
    def fixture_path(self) -> Path:
        return self.directory / "nvml.json"

    def put_on_gpu(self, gpu: str, pid: int, memory: int) -> None:
        self.gpu_processes.setdefault(gpu, []).append((pid, memory))
        self.write_fixture()

    def clear_gpu(self, pid: int) -> None:
        for rows in self.gpu_processes.values():
            rows[:] = [row for row in rows if row[0] != pid]
        self.write_fixture()

    def write_fixture(self) -> None:
        devices: list[dict[str, Any]] = []
        for index, uuid in enumerate(self.gpus):
            rows = self.gpu_processes.get(uuid, [])
            used = sum(m for _, m in rows)
            devices.append({
                "uuid": uuid, "name": GPU_MODEL, "memory": {"total": 80 << 30, "free": (80 << 30) - used, "used": used},
                "utilization": {"gpu": 90 if rows else 0, "memory": 10}, "temperature": 50 + index,
                "power_mw": 200000, "mig_mode": [0, 0], "accounting_mode": 0,
                "compute_processes": [{"pid": pid, "usedGpuMemory": mem} for pid, mem in rows],
                "graphics_processes": [],
            })
        document = {"driver_version": "550.54.15", "cuda_driver_version": 12040, "nvml_version": "12.550.54.15",
                    "devices": devices}
        tmp = self.fixture_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(document))
        os.chmod(tmp, 0o644)
        tmp.replace(self.fixture_path)

    def local_transport(self) -> Transport:
        return LocalTransport(
            [sys.executable, "-m", "tests.probe.fake_node", "--config", str(self.config_path)],
            {"GPULEDGER_NVML_FAKE": str(self.fixture_path), "PYTHONPATH": str(ROOT)},
        )

    def forced_command(self) -> list[str]:
        """The node command as the node account runs it over SSH: the system Python, the probe, the NVML fake.

        The account cannot read the venv's interpreter, so pynvml (pure Python) is copied beside the node.
        """
        lib = self.directory / "lib"
        lib.mkdir(exist_ok=True)
        os.chmod(lib, 0o755)
        shutil.copy(pynvml.__file__, lib / "pynvml.py")
        os.chmod(lib / "pynvml.py", 0o644)
        python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
        return ["env", f"PYTHONPATH={ROOT}:{lib}", f"GPULEDGER_NVML_FAKE={self.fixture_path}", python, "-m",
                "tests.probe.fake_node"]

    def cleanup(self) -> None:
        for controller in ("cpu", "devices"):
            group = Path("/sys/fs/cgroup") / controller / f"glc-{self.name}"
            if not group.exists():
                continue
            for child in sorted(group.glob("user-*"), reverse=True):
                _drain(child, Path("/sys/fs/cgroup") / controller)
            _drain(group, Path("/sys/fs/cgroup") / controller)


def _drain(group: Path, root: Path) -> None:
    tasks = group / "tasks"
    if tasks.exists():
        for pid in tasks.read_text().split():
            try:
                (root / "tasks").write_text(pid)
            except OSError:
                pass
    try:
        group.rmdir()
    except OSError:
        pass


def spawn_as(user: str, *argv: str) -> subprocess.Popen[bytes]:
    """A real process of ``user`` (the tests' stand-in for a GPU job)."""
    return subprocess.Popen(list(argv), user=user, cwd="/", stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


@dataclass
class Cluster:
    database: Database
    nodes: dict[str, SimNode]
    policy: TierPolicy = field(default_factory=lambda: TierPolicy(kill_grace_s=0))
    dry_run: bool = False
    queue: QueueSettings | None = None
    # A VM node under TCG answers in seconds; the simulated ones in milliseconds.
    command_timeout_s: float = 10
    budget_s: float = 30

    def __post_init__(self) -> None:
        self.engine: Engine = create_engine(self.database.app_url, pool_size=5, max_overflow=5)
        self.admin_engine: Engine = create_engine(self.database.admin_url)
        self.ledger_config = LedgerConfig(database_url=Secret(self.database.app_url))
        self.ledger = Ledger(self.engine, self.ledger_config)
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.transports = {name: node.local_transport() for name, node in self.nodes.items()}
        self.reach = {name: Node(name=name, address="localhost", local=True) for name in self.nodes}
        self.controller = self.make_controller()
        self.runner = asyncio.Runner()

    def tick(self) -> TickSummary:
        """One tick on the cluster's own event loop (SSH connections outlive a tick, as in the controller)."""
        return self.runner.run(self.controller.tick(self.inventory))

    def over_ssh(self, name: str, node: Node, transport: Transport) -> None:
        """Reach node ``name`` through ``transport`` (an SshTransport to a real sshd) from now on."""
        self.reach[name] = node
        self.transports[name] = transport

    def make_controller(self, name: str = "test-controller", anchors: AnchorLog | None = None) -> Controller:
        return Controller(
            engine=self.engine, ledger=self.ledger, ledger_config=self.ledger_config,
            transports=lambda node: self.transports[node.name],
            charger=Charger(self.engine, self.ledger_config.currency, UsageSettings()),
            settings=TickSettings(budget_s=self.budget_s, command_timeout_s=self.command_timeout_s, kill_timeout_s=20,
                                  dry_run=self.dry_run,
                                  queue=self.queue),
            policy=self.policy, metrics=self.metrics, name=name, anchors=anchors,
        )

    @property
    def inventory(self) -> list[Node]:
        return [self.reach[name] for name in sorted(self.reach)]

    def setup_ledger(self, users: dict[str, int]) -> None:
        """Prices, and each billing user with an opening recharge (micro-units)."""
        self.ledger.add_price("gpu", GPU_PRICE[0], GPU_PRICE[1], model_pattern=GPU_MODEL, actor="test",
                              valid_from=datetime(2020, 1, 1, tzinfo=UTC))
        self.ledger.add_price("cpu", CPU_PRICE[0], CPU_PRICE[1], actor="test",
                              valid_from=datetime(2020, 1, 1, tzinfo=UTC))
        for user, micro in users.items():
            self.ledger.add_user(user, actor="test")
            if micro:
                self.ledger.recharge(user, micro, idem_key=f"open-{user}", actor="test")

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.admin_engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.admin_engine.connect() as conn:
            return list(conn.execute(text(sql), params))

    def usage_seconds(self, user: str, resource: str) -> Decimal:
        return Decimal(self.scalar(
            "SELECT coalesce(sum(quantity), 0) FROM ledger.usage WHERE linux_user = :u AND resource = :r",
            u=user, r=resource))

    def charged_micro(self, user: str) -> int:
        return int(self.scalar(
            "SELECT coalesce(sum(u.amount), 0) FROM ledger.usage u JOIN ledger.billing_user b ON b.id = u.user_id"
            " WHERE b.name = :u", u=user))

    def close(self) -> None:
        for transport in self.transports.values():
            self.runner.run(transport.aclose())
        self.runner.close()
        self.controller.close()
        self.engine.dispose()
        self.admin_engine.dispose()
        for node in self.nodes.values():
            node.cleanup()


def make_nodes(names: list[str]) -> tuple[dict[str, SimNode], Path]:
    base = Path(tempfile.mkdtemp(prefix="glc-cluster-", dir="/run"))
    os.chmod(base, 0o755)
    return {name: SimNode(name, base / name) for name in names}, base


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


MICRO_PER_GPU_SECOND = 100
MICRO_PER_CORE_SECOND = 10
assert GPU_PRICE[0] * MICRO / GPU_PRICE[1] == MICRO_PER_GPU_SECOND
assert CPU_PRICE[0] * MICRO / CPU_PRICE[1] == MICRO_PER_CORE_SECOND


class SudoNodeCommand:
    """The node command of ``node`` reached over SSH through ``sudo -n``, as the rollout installs it (one
    sudoers file, removed by ``close()``), so enforcement verbs over SSH really change this node's cgroups,
    status files and processes. The root-owned wrapper pins the node's config and NVML fake."""

    def __init__(self, node: SimNode, account: str) -> None:
        self.wrapper = node.directory / "gpuledger-node"
        python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
        lib = node.forced_command()[1].split(":", 1)[1]   # the PYTHONPATH part after the repository
        # Over SSH the node command reads only /etc/gpuledger/node.json; this node's config (status directory,
        # cgroup parent) needs the local form, so the wrapper hands the verb on as words (they hold no spaces).
        self.wrapper.write_text(
            "#!/bin/sh\nset -f\n"
            f"exec env -u SSH_ORIGINAL_COMMAND -u SUDO_USER PYTHONPATH={ROOT}:{lib}"
            f" GPULEDGER_NVML_FAKE={node.fixture_path} {python} -m tests.probe.fake_node --config {node.config_path}"
            " $SSH_ORIGINAL_COMMAND\n"
        )
        os.chmod(self.wrapper, 0o755)
        self.sudoers = Path(f"/etc/sudoers.d/glc-{node.name}")
        rules = (f'Defaults!{self.wrapper} env_keep += "SSH_ORIGINAL_COMMAND"\n'
                 f'{account} ALL=(root) NOPASSWD: {self.wrapper} ""\n')
        staged = node.directory / "sudoers"
        staged.write_text(rules)
        subprocess.run(["visudo", "-cqf", str(staged)], check=True)
        os.chmod(staged, 0o440)
        shutil.move(staged, self.sudoers)

    @property
    def argv(self) -> list[str]:
        return ["sudo", "-n", str(self.wrapper)]

    def close(self) -> None:
        self.sudoers.unlink(missing_ok=True)
