"""Immutable records shared across the controller: a node from the inventory, a command's result, outcomes,
a tick's settings and summary, and the shape of the call that runs database work off the event loop.

They live here, below every other collector module, so that the tick, its rooms and the metrics can all use
them without importing one another (tests/collector/test_import_cycles.py).
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Protocol, TypeVar

from ledger.money import format_amount

T = TypeVar("T")


class Outcome(enum.StrEnum):
    """How one node fared in one tick. Only ``ok`` produces charges; every other outcome is recorded."""

    OK = "ok"
    UNREACHABLE = "unreachable"
    AUTH_FAILED = "auth_failed"
    HOSTKEY_MISMATCH = "hostkey_mismatch"
    TIMEOUT = "timeout"
    NONZERO_EXIT = "nonzero_exit"
    BAD_OUTPUT = "bad_output"


@dataclass(frozen=True)
class Node:
    """One host of the Ansible inventory, as the controller reaches it.

    ``ssh_user`` is the node account the controller logs in as (``gpuledger_ssh_user``, default
    ``gpuledger``); ``ansible_user`` is the rollout account and is kept only for display.
    """

    name: str
    address: str
    port: int = 22
    ssh_user: str = "gpuledger"
    local: bool = False
    ansible_user: str | None = None
    groups: tuple[str, ...] = ()
    region: str = ""
    listed: bool = True
    remarks: str = ""
    variables: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class CommandResult:
    """A node command that ran to completion (whatever its exit status)."""

    node: str
    verb: tuple[str, ...]
    exit_status: int
    stdout: bytes
    stderr: str
    elapsed_s: float

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


@dataclass(frozen=True)
class QueueSettings:
    """The GPU queue's driver (docs/queue.md, "The per-tick driver"): what a GPU used without a grant means, per
    pool (``levels``, else ``default_level``): 0 recorded, 1 the user warned, 2 warned and, while a request
    waits for that pool, the processes killed once they have run ``grace_s`` without a grant."""

    levels: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    default_level: int = 0
    grace_s: int = 600

    def level(self, pool: str) -> int:
        return self.levels.get(pool, self.default_level)


@dataclass(frozen=True)
class TickSettings:
    budget_s: float = 45.0
    command_timeout_s: float = 15.0
    kill_timeout_s: float = 60.0
    concurrency: int = 64
    dry_run: bool = False
    skew_threshold_s: int = 30
    recharge_hint: str = ""
    db_workers: int = 4
    sample_retention_days: int = 30
    decision_retention_days: int = 90
    queue: QueueSettings | None = None  # the GPU queue's driver (collector.queueing) runs in each tick


@dataclass(frozen=True)
class TickSummary:
    tick_id: int | None
    started_at: datetime
    duration_s: float
    outcomes: dict[str, int]
    users: int
    charged: int
    entries: int
    actions: int
    dry_run: bool
    database_ok: bool
    enforced: bool
    over_budget: bool

    def line(self, currency: str) -> str:
        nodes = " ".join(f"{k}={v}" for k, v in sorted(self.outcomes.items()))
        mode = " dry-run" if self.dry_run else ""
        db = "" if self.database_ok else " DATABASE UNREACHABLE (nothing enforced)"
        return (
            f"tick {self.tick_id or '-'}{mode}: {self.duration_s:.2f}s nodes[{nodes}] users={self.users}"
            f" charged={format_amount(self.charged)} {currency} entries={self.entries} actions={self.actions}{db}"
        )


class Db(Protocol):
    """Runs blocking database work (``fn(*args)``) on the controller's thread pool and awaits its result:
    the rooms get it from the tick instead of a pool of their own, so the tick's ``db_workers`` bound holds."""

    def __call__(self, fn: Callable[..., T], /, *args: Any) -> Awaitable[T]: ...
