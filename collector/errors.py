"""Every error the controller raises, each carrying the data a caller needs to act on it.

OS, SSH and database exceptions are translated into these at one boundary per concern (the transport,
the store), so the tick loop never has to know asyncssh's or psycopg's exception classes. A bad configuration
value is every package's ``ledger.errors.ConfigError`` (ledger.environ reads the environment for all of them).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class CollectorError(Exception):
    """Base class of the controller's own errors."""


class InventoryError(CollectorError):
    """The Ansible inventory could not be read, or a host in it is unusable."""

    def __init__(self, source: Path | str, problems: Sequence[str]) -> None:
        super().__init__(f"inventory {source}: " + "; ".join(problems))
        self.source = str(source)
        self.problems = tuple(problems)


class NodeUnavailable(CollectorError):
    """No command could be run on ``node``: ``outcome`` says why (see ``collector.types.Outcome``)."""

    def __init__(self, node: str, outcome: str, detail: str) -> None:
        super().__init__(f"{node}: {outcome}: {detail}")
        self.node = node
        self.outcome = outcome
        self.detail = detail


class HostKeyError(CollectorError):
    """Pinning a host key was refused (for example because a different key is already pinned)."""

    def __init__(self, host: str, problem: str) -> None:
        super().__init__(f"{host}: {problem}")
        self.host = host
        self.problem = problem
