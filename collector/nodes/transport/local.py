"""The local node (``ansible_connection=local``): the node command as a subprocess, without SSH.

The verb words are appended to the command's argv (the node command's local mode, docs/node-command.md:
``python3 -m probe [--config PATH] VERB ARG...``), where the same validator as over SSH checks them. No
shell ever sees them, and none of the variables that would put the node command in SSH mode is passed.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import time
from collections.abc import Mapping, Sequence

from collector.errors import NodeUnavailable
from collector.nodes.transport.abc import NodeSession, Transport
from collector.types import CommandResult, Node, Outcome

# Only what the node command needs from our environment: nothing of the controller's secrets, and none of
# SSH_ORIGINAL_COMMAND, SUDO_USER, SSH_CONNECTION, SSH_CLIENT (they would switch it to SSH mode).
_PASSED_ENV = ("PATH", "LANG", "LC_ALL", "PYTHONPATH")


class LocalSession(NodeSession):
    def __init__(self, node: Node, argv: tuple[str, ...], env: Mapping[str, str]) -> None:
        self.node = node
        self._argv = argv
        self._env = env

    async def run(self, verb: Sequence[str], *, stdin: bytes = b"", timeout_s: float) -> CommandResult:
        started = time.monotonic()
        try:
            process = await asyncio.create_subprocess_exec(
                *self._argv,
                *verb,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=dict(self._env),
                start_new_session=True,
            )
        except OSError as exc:
            raise NodeUnavailable(self.node.name, Outcome.UNREACHABLE, f"cannot start {self._argv[0]}: {exc}") from exc
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(stdin), timeout_s)
        except TimeoutError:
            # The node command may have children; its whole session goes.
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            await process.wait()
            detail = f"{shlex.join(verb)} ran over {timeout_s} s"
            raise NodeUnavailable(self.node.name, Outcome.TIMEOUT, detail) from None
        return CommandResult(
            node=self.node.name,
            verb=tuple(verb),
            exit_status=int(process.returncode if process.returncode is not None else -1),
            stdout=stdout,
            stderr=stderr.decode("utf-8", "replace"),
            elapsed_s=time.monotonic() - started,
        )


class LocalTransport(Transport):
    """Runs ``command`` (argv) for every local node; ``extra_env`` is added to its environment."""

    def __init__(self, command: Sequence[str], extra_env: Mapping[str, str] | None = None) -> None:
        if not command:
            raise ValueError("the local node command must not be empty")
        self.command = tuple(command)
        self._env = {k: os.environ[k] for k in _PASSED_ENV if k in os.environ} | dict(extra_env or {})

    async def session(self, node: Node) -> NodeSession:
        return LocalSession(node, self.command, self._env)

    async def discard(self, node: Node) -> None:
        """Nothing stays open between runs of a local subprocess."""

    async def aclose(self) -> None:
        """Nothing stays open between runs of a local subprocess."""
