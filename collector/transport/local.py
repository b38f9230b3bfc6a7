"""The local node (``ansible_connection=local``): the node command as a subprocess, without SSH.

The verb travels exactly as it does over SSH, in ``SSH_ORIGINAL_COMMAND`` with no arguments on the
command line, so the node command validates both paths the same way. The command is an argv list and
no shell ever sees it.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import time
from collections.abc import Mapping, Sequence

from collector.errors import NodeUnavailable
from collector.transport.abc import NodeSession, Transport
from collector.types import CommandResult, Node, Outcome

# Only what the node command needs from our environment; nothing of the controller's secrets.
_PASSED_ENV = ("PATH", "LANG", "LC_ALL", "PYTHONPATH")


class LocalSession(NodeSession):
    def __init__(self, node: Node, argv: tuple[str, ...], env: Mapping[str, str]) -> None:
        self.node = node
        self._argv = argv
        self._env = env

    async def run(self, verb: Sequence[str], *, stdin: bytes = b"", timeout_s: float) -> CommandResult:
        started = time.monotonic()
        env = {**self._env, "SSH_ORIGINAL_COMMAND": shlex.join(verb)}
        try:
            process = await asyncio.create_subprocess_exec(
                *self._argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
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
