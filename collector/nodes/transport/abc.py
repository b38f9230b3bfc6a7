"""The contract every node transport keeps (SSH for remote nodes, a subprocess for the local one).

A transport runs the node command (docs/node-command.md) with one verb and optional standard input,
and nothing else: the verb is the only thing the controller chooses, and the node command validates it.
One test suite (tests/collector/test_transport_contract.py) runs against every implementation.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

from collector.types import CommandResult, Node


class NodeSession(abc.ABC):
    """An open way to run node-command verbs on one node; a tick's sample and enforcement share it."""

    node: Node

    @abc.abstractmethod
    async def run(self, verb: Sequence[str], *, stdin: bytes = b"", timeout_s: float) -> CommandResult:
        """Run the node command with ``verb`` (argv words, never a shell string) and ``stdin``.

        Returns a ``CommandResult`` whenever the command ran to completion, whatever its exit status.
        Raises ``collector.errors.NodeUnavailable`` with outcome ``timeout`` when it did not finish within
        ``timeout_s`` seconds (it is then stopped), or ``unreachable`` when the connection broke; the
        session is unusable afterwards and the next ``Transport.session`` call opens a new one.
        """


class Transport(abc.ABC):
    """Opens sessions to nodes; keeps them open across ticks where that is cheaper."""

    @abc.abstractmethod
    async def session(self, node: Node) -> NodeSession:
        """A usable session to ``node``, reusing an open one when possible.

        Raises ``collector.errors.NodeUnavailable`` with outcome ``unreachable``, ``timeout``,
        ``auth_failed`` or ``hostkey_mismatch``; when the host key is not the pinned one, no command runs.
        """

    @abc.abstractmethod
    async def discard(self, node: Node) -> None:
        """Close ``node``'s open session, if any (after an error, or when the node leaves the inventory)."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Close every open session."""
