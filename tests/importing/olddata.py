"""A small hit-aiot-ops lab, generated with the old system's defects, and loaded into a real PostgreSQL.

The balances are what the old controller would have left: every report's per-user total is subtracted in
float64 and written back into DECIMAL(10,2) (lib/pq sends the float's shortest text, PostgreSQL rounds half away
from zero), so sub-cent charges vanish and others round up (seed-hit-aiot-ops.md W1). The usage rows keep the
old float CPU and memory columns and DECIMAL(10,4) costs; an H100 node has no price row (the old controller
charged it its silent default, 0.1 a minute); carol has no mapping at all; and alice's rows straddle local
midnight in Asia/Shanghai (15:59 and 16:01 naive UTC are 23:59 and 00:01 at +08:00).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import psycopg

SCHEMA = Path(__file__).with_name("old_schema.sql")
DEFAULT_CREDIT = Decimal(100)
CPU_PRICE = Decimal("0.02")
PRICES = {"CPU_CORE": CPU_PRICE, "A100": Decimal("0.50"), "RTX 4090": Decimal("0.30"), "RTX 3090": Decimal("0.20"),
          "RTX 3080": Decimal("0.15"), "V100": Decimal("0.40")}
A100, RTX4090, H100, V100 = ("NVIDIA A100-SXM4-80GB", "NVIDIA GeForce RTX 4090", "NVIDIA H100 80GB HBM3",
                             "Tesla V100-PCIE-32GB")
NODES = {"60001": A100, "60002": RTX4090, "60003": H100, "60004": V100}
OLD_DEFAULT_PRICE = Decimal("0.1")


@dataclass(frozen=True)
class Process:
    node: str
    local_user: str
    user: str
    at: datetime            # naive: the old system's UTC
    pid: int
    cpu_percent: float
    memory_mb: float
    gpus: tuple[str, ...]   # the models of the GPUs the process is on

    @property
    def cost(self) -> Decimal:
        """The old formula (billing.go): a flat price per GPU per report, CPU scaled to a 60 s interval, round4."""
        gpu = sum((_old_price(model) for model in self.gpus), Decimal(0))
        cpu = Decimal(repr(self.cpu_percent)) / 100 * CPU_PRICE
        return (gpu + cpu).quantize(Decimal("0.0001"), ROUND_HALF_UP)


def _old_price(model: str) -> Decimal:
    keys = sorted((k for k in PRICES if k != "CPU_CORE" and k in model), key=len, reverse=True)
    return PRICES[keys[0]] if keys else OLD_DEFAULT_PRICE


@dataclass
class OldLab:
    users: dict[str, Decimal] = field(default_factory=dict)
    processes: list[Process] = field(default_factory=list)
    recharges: list[tuple[str, Decimal, str, datetime]] = field(default_factory=list)
    mappings: list[tuple[str, str, str]] = field(default_factory=list)
    exemptions: list[tuple[str, str]] = field(default_factory=list)
    whitelist: list[tuple[str, str]] = field(default_factory=list)
    blacklist: list[tuple[str, str]] = field(default_factory=list)

    def charge(self, processes: list[Process]) -> None:
        """One report: the old DeductBalanceTx per user, float64 minus, DECIMAL(10,2) write-back."""
        self.processes.extend(processes)
        totals: dict[str, Decimal] = {}
        for p in processes:
            totals[p.user] = totals.get(p.user, Decimal(0)) + p.cost
        for user, total in totals.items():
            self.users.setdefault(user, DEFAULT_CREDIT)
            written = Decimal(repr(float(self.users[user]) - float(total)))
            self.users[user] = written.quantize(Decimal("0.01"), ROUND_HALF_UP)

    def recharge(self, user: str, amount: str, at: datetime) -> None:
        self.users.setdefault(user, DEFAULT_CREDIT)
        self.users[user] += Decimal(amount)
        self.recharges.append((user, Decimal(amount), "admin", at))


def generate() -> OldLab:
    lab = OldLab()
    for name in ("alice", "bob", "carol", "dave", "erin"):
        lab.users[name] = DEFAULT_CREDIT
    lab.mappings = [("60001", "alice", "alice"), ("60002", "alice_w", "alice"), ("60003", "bob", "bob"),
                    ("60001", "bob2", "bob"), ("60001", "dave", "dave"), ("60002", "erin", "erin")]
    lab.exemptions = [("*", "erin")]
    lab.whitelist = [("60001", "guest")]
    lab.blacklist = [("60002", "mallory")]
    lab.recharge("alice", "50.00", datetime(2026, 1, 5, 1, 0))
    lab.recharge("carol", "20.00", datetime(2026, 1, 6, 9, 30))
    start = datetime(2026, 1, 31, 15, 55)   # 23:55 in Asia/Shanghai: ten minutes across local midnight
    for minute in range(10):
        at = start + timedelta(minutes=minute)
        lab.charge([Process("60001", "alice", "alice", at, 4100, 12.5, 2048.5, (A100,)),
                    Process("60001", "dave", "dave", at, 4200, 33.3, 8192.25, (A100,) * 4)])
        lab.charge([Process("60002", "alice_w", "alice", at, 5100, 20.0, 512.0, ())])
        if minute < 5:
            lab.charge([Process("60003", "bob", "bob", at, 6100, 0.0, 100.0, (H100,))])
    for minute in range(50):   # dave runs on into debt: the old balance goes below zero
        at = start + timedelta(minutes=10 + minute)
        lab.charge([Process("60001", "dave", "dave", at, 4200, 33.3, 8192.25, (A100,) * 4)])
    return lab


def load(url: str, lab: OldLab) -> None:
    """The old schema and ``lab``'s rows into the (empty) database at ``url``."""
    with psycopg.connect(url, autocommit=False) as conn:
        conn.execute(SCHEMA.read_text())
        for name, balance in lab.users.items():
            status = _status(balance)
            conn.execute("INSERT INTO users (username, balance, status, created_at) VALUES (%s, %s, %s, %s)",
                         (name, balance, status, datetime(2026, 1, 1)))
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO usage_records (record_id, node_id, local_username, username, timestamp, pid, cpu_percent,"
                " memory_mb, gpu_count, command, gpu_usage, cost) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
                " %s, %s)",
                [(f"r{n}", p.node, p.local_user, p.user, p.at, p.pid, p.cpu_percent, p.memory_mb, len(p.gpus),
                  "python train.py --token=SECRET",
                  json.dumps([{"gpu_id": i, "gpu_model": m, "gpu_bus_id": f"0000:{i:02x}:00.0", "memory_mb": 1000}
                              for i, m in enumerate(p.gpus)]), p.cost)
                 for n, p in enumerate(lab.processes)])
            cur.executemany("INSERT INTO recharge_records (username, amount, method, created_at)"
                            " VALUES (%s, %s, %s, %s)", lab.recharges)
            cur.executemany("INSERT INTO resource_prices (gpu_model, price_per_minute) VALUES (%s, %s)",
                            list(PRICES.items()))
            cur.executemany("INSERT INTO nodes (node_id, gpu_model, gpu_count) VALUES (%s, %s, 8)", list(NODES.items()))
            cur.executemany("INSERT INTO user_node_accounts (node_id, local_username, billing_username)"
                            " VALUES (%s, %s, %s)", lab.mappings)
            for table, rows in (("ssh_exemptions", lab.exemptions), ("ssh_whitelist", lab.whitelist),
                                ("ssh_blacklist", lab.blacklist)):
                cur.executemany(f"INSERT INTO {table} (node_id, local_username, created_by)"  # noqa: S608 (fixed names)
                                " VALUES (%s, %s, 'admin')", rows)
        conn.execute("INSERT INTO user_accounts (username, email, password_hash) VALUES"
                     " ('alice', 'alice@example.org', '$2a$10$abcdefghijklmnopqrstuv')")
        conn.execute("INSERT INTO app_settings (key, value) VALUES ('smtp_password', 'plaintext-secret')")
        conn.commit()


def _status(balance: Decimal) -> str:
    if balance >= 100:
        return "normal"
    if balance >= 10:
        return "warning"
    return "limited" if balance >= 0 else "blocked"
