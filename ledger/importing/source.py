"""What the old hit-aiot-ops database holds, read in one REPEATABLE READ READ ONLY transaction.

Every DECIMAL and float column is selected as text and read as ``Decimal`` (the old floats' shortest text, which
PostgreSQL prints), so no value passes through a binary float here. The old TIMESTAMP columns carry no zone;
its agents stamped UTC (seed-hit-aiot-ops.md W7), so they are read as UTC. Usage rows are many (one per process
per minute): they are streamed from a server-side cursor, in the same snapshot, never held in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import psycopg
from psycopg import IsolationLevel

from ledger.errors import LedgerError, LedgerUnavailable

# The fork's (Samsara-1999) SSH lists; upstream has only ssh_whitelist. A table that is absent reads as empty.
LIST_TABLES = ("ssh_exemptions", "ssh_whitelist", "ssh_blacklist")


@dataclass(frozen=True)
class OldUser:
    name: str
    balance: Decimal
    status: str


@dataclass(frozen=True)
class OldRecharge:
    id: int
    user: str
    amount: Decimal
    method: str
    at: datetime


@dataclass(frozen=True)
class OldMapping:
    node: str
    linux_user: str
    user: str


@dataclass(frozen=True)
class OldListEntry:
    table: str
    node: str
    linux_user: str


@dataclass(frozen=True)
class UsageSummary:
    """Per billing user: how many usage rows, the sum of their costs, and the newest row's time."""

    user: str
    rows: int
    cost: Decimal
    last_at: datetime


@dataclass(frozen=True)
class OldUsage:
    id: int
    node: str
    linux_user: str
    user: str
    at: datetime
    pid: int | None
    cpu_percent: str | None
    memory_mb: str | None
    gpu_models: tuple[str, ...]
    cost: Decimal


@dataclass(frozen=True)
class Snapshot:
    users: tuple[OldUser, ...]
    recharges: tuple[OldRecharge, ...]
    prices: tuple[tuple[str, Decimal], ...]   # (gpu_model key, price_per_minute); CPU_CORE is the CPU price
    mappings: tuple[OldMapping, ...]
    lists: tuple[OldListEntry, ...]
    models: tuple[str, ...]                   # every distinct GPU model string of the usage and node rows
    usage: tuple[UsageSummary, ...]
    usage_max_id: int


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC)


@contextmanager
def reading(dsn: str) -> Iterator[psycopg.Connection]:
    """One read-only snapshot of the old database: the import never writes there. ``dsn`` is a libpq URL
    (``postgresql://``; SQLAlchemy's ``postgresql+psycopg://`` spelling is taken too)."""
    try:
        conn = psycopg.connect(dsn.replace("postgresql+psycopg://", "postgresql://", 1))
    except psycopg.OperationalError as exc:
        raise LedgerUnavailable(f"the old database: {str(exc).strip()}") from exc
    try:
        conn.isolation_level = IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        with conn.transaction():
            yield conn
    except psycopg.errors.UndefinedTable as exc:
        raise LedgerError(f"the old database is not hit-aiot-ops's: {exc.diag.message_primary}",
                          missing=exc.diag.message_primary) from exc
    finally:
        conn.close()


def _present(conn: psycopg.Connection, table: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone() == (True,)


def snapshot(conn: psycopg.Connection) -> Snapshot:
    users = tuple(OldUser(n, Decimal(b), s) for n, b, s in conn.execute(
        "SELECT username, balance::text, status FROM users ORDER BY username"))
    recharges = tuple(OldRecharge(i, u, Decimal(a), m or "", _utc(t)) for i, u, a, m, t in conn.execute(
        "SELECT id, username, amount::text, method, created_at FROM recharge_records ORDER BY id"))
    prices = tuple((k, Decimal(p)) for k, p in conn.execute(
        "SELECT gpu_model, price_per_minute::text FROM resource_prices ORDER BY gpu_model"))
    mappings = tuple(OldMapping(*row) for row in conn.execute(
        "SELECT node_id, local_username, billing_username FROM user_node_accounts ORDER BY node_id, local_username"))
    lists = tuple(
        OldListEntry(table, node, user)
        for table in LIST_TABLES if _present(conn, table)
        for node, user in conn.execute(f"SELECT node_id, local_username FROM {table}"  # noqa: S608 (a fixed name)
                                       " ORDER BY node_id, local_username"))
    models = tuple(m for (m,) in conn.execute(
        "SELECT model FROM (SELECT g ->> 'gpu_model' AS model FROM usage_records,"
        " jsonb_array_elements(CASE jsonb_typeof(gpu_usage) WHEN 'array' THEN gpu_usage ELSE '[]' END) g"
        " UNION SELECT gpu_model FROM nodes) m WHERE model IS NOT NULL AND model <> '' ORDER BY model"))
    usage = tuple(UsageSummary(u, int(n), Decimal(c), _utc(t)) for u, n, c, t in conn.execute(
        "SELECT username, count(*), sum(cost)::text, max(timestamp) FROM usage_records GROUP BY username"
        " ORDER BY username"))
    max_id = conn.execute("SELECT coalesce(max(id), 0) FROM usage_records").fetchone()
    return Snapshot(users, recharges, prices, mappings, lists, models, usage, int(max_id[0]) if max_id else 0)


def usage_rows(conn: psycopg.Connection, batch: int = 5000) -> Iterator[OldUsage]:
    """Every usage row in id order, from a server-side cursor (the command line is not read: argv may hold
    secrets, and the old API leaked them, W10). Upstream has no local_username (the fork added it): there the
    Linux name is the billing name, which is what the old agent reported."""
    local = "coalesce(local_username, username)" if conn.execute(
        "SELECT 1 FROM information_schema.columns WHERE table_name = 'usage_records'"
        " AND column_name = 'local_username' AND table_schema = ANY(current_schemas(false))").fetchone() else "username"
    with conn.cursor(name="old_usage") as cur:
        cur.itersize = batch
        cur.execute(
            f"SELECT id, node_id, {local}, username, timestamp, pid, cpu_percent::text,"  # noqa: S608 (fixed text)
            " memory_mb::text, coalesce(ARRAY(SELECT g ->> 'gpu_model' FROM jsonb_array_elements("
            "   CASE jsonb_typeof(gpu_usage) WHEN 'array' THEN gpu_usage ELSE '[]' END) g), '{}'), cost::text"
            " FROM usage_records ORDER BY id")
        for i, node, linux_user, user, at, pid, cpu, memory, models, cost in cur:
            yield OldUsage(int(i), node, linux_user, user, _utc(at), pid, cpu, memory,
                           tuple(m or "" for m in models), Decimal(cost))
