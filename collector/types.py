"""Immutable records shared across the controller: a node from the inventory, a command's result, outcomes."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


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
