"""Nodes over SSH (asyncssh), with every default that could trust, wait or read implicitly made explicit.

- Host keys: only the project's known_hosts file (``KnownHostsCache``); no trust on first use.
- Client key: the one dedicated key, loaded once (an RSA key costs ~135 ms of CPU to load).
- Nothing implicit: no ``~/.ssh/config``, no agent, no password/keyboard/GSS/host-based auth, no PTY.
- Bounded: connect and login timeouts, keepalive, and a timeout on every command.
- Connections stay open across ticks (a command on an open connection costs ~4 ms instead of ~94 ms);
  any error drops the node's connection and the next tick opens a new one.

asyncssh and OS exceptions become ``NodeUnavailable`` here and nowhere else.
"""

from __future__ import annotations

import asyncio
import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from collector.errors import NodeUnavailable
from collector.nodes.knownhosts import KnownHostsCache, fingerprint
from collector.nodes.transport.abc import NodeSession, Transport
from collector.types import CommandResult, Node, Outcome
from ledger.errors import ConfigError

ENCRYPTION_ALGS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com")


@dataclass(frozen=True)
class SshSettings:
    """Where the controller's SSH identity and trust live, and how long it waits."""

    client_key: Path
    known_hosts: Path
    connect_timeout_s: float = 10.0
    login_timeout_s: float = 10.0
    keepalive_interval_s: float = 15.0
    keepalive_count_max: int = 3


def client_options(
    settings: SshSettings, key: asyncssh.SSHKey, known_hosts: asyncssh.SSHKnownHosts, node: Node
) -> asyncssh.SSHClientConnectionOptions:
    """The complete option set for one node: every security- or time-relevant option given explicitly."""
    return asyncssh.SSHClientConnectionOptions(
        known_hosts=known_hosts,
        client_keys=[key],
        agent_path=None,
        config=None,
        username=node.ssh_user,
        port=node.port,
        connect_timeout=settings.connect_timeout_s,
        login_timeout=settings.login_timeout_s,
        keepalive_interval=settings.keepalive_interval_s,
        keepalive_count_max=settings.keepalive_count_max,
        public_key_auth=True,
        password_auth=False,
        kbdint_auth=False,
        host_based_auth=False,
        gss_auth=False,
        gss_kex=False,
        pkcs11_provider=None,
        x509_trusted_certs=None,
        request_pty=False,
        # AES-GCM first: with AES-NI it costs a fraction of asyncssh's ChaCha20-Poly1305 per packet, which
        # dominated the controller's CPU at 1,000 nodes; every choice here is an authenticated cipher.
        encryption_algs=ENCRYPTION_ALGS,
        # Samples are ~14 kB of JSON on loopback or a LAN: zlib would cost both ends more CPU than it saves.
        compression_algs=("none",),
    )


class SshSession(NodeSession):
    def __init__(
        self, transport: SshTransport, node: Node, connection: asyncssh.SSHClientConnection, *, reused: bool
    ) -> None:
        self._transport = transport
        self._connection = connection
        self._reused = reused
        self.node = node

    async def _run(self, verb: Sequence[str], stdin: bytes, timeout_s: float) -> asyncssh.SSHCompletedProcess:
        # The forced command receives this string as SSH_ORIGINAL_COMMAND; quoting keeps each word one word.
        return await self._connection.run(shlex.join(verb), input=stdin, check=False, timeout=timeout_s, encoding=None)

    async def run(self, verb: Sequence[str], *, stdin: bytes = b"", timeout_s: float) -> CommandResult:
        started = time.monotonic()
        try:
            try:
                completed = await self._run(verb, stdin, timeout_s)
            except TimeoutError:
                raise  # the node is there but slow: running the verb again would only double the wait
            except (asyncssh.Error, OSError):
                if not self._reused:
                    raise
                # A connection kept from an earlier tick may have died with the node's sshd (a restart, a
                # reboot): reconnect once, verifying the host key again, and run the verb on the new one.
                await self._transport.discard(self.node)
                self._connection, self._reused = await self._transport.connect(self.node), False
                completed = await self._run(verb, stdin, timeout_s)
        except NodeUnavailable:
            raise
        except (TimeoutError, asyncssh.Error, OSError) as exc:
            await self._transport.discard(self.node)
            raise self._transport.translate(self.node, exc) from exc
        stdout = completed.stdout if isinstance(completed.stdout, bytes) else b""
        stderr = completed.stderr if isinstance(completed.stderr, bytes) else b""
        status = completed.returncode if completed.returncode is not None else -1
        return CommandResult(
            node=self.node.name,
            verb=tuple(verb),
            exit_status=status,
            stdout=stdout,
            stderr=stderr.decode("utf-8", "replace"),
            elapsed_s=time.monotonic() - started,
        )


class SshTransport(Transport):
    """One persistent asyncssh connection per node, opened on demand."""

    def __init__(self, settings: SshSettings) -> None:
        self.settings = settings
        try:
            self._key = asyncssh.read_private_key(str(settings.client_key))
        except (OSError, asyncssh.KeyImportError) as exc:
            raise ConfigError("GPULEDGER_SSH_KEY", f"cannot load the client key {settings.client_key}: {exc}") from exc
        self._known_hosts = KnownHostsCache(settings.known_hosts)
        self._connections: dict[str, asyncssh.SSHClientConnection] = {}

    async def session(self, node: Node) -> NodeSession:
        connection = self._connections.get(node.name)
        if connection is not None and not connection.is_closed():
            return SshSession(self, node, connection, reused=True)
        return SshSession(self, node, await self.connect(node), reused=False)

    async def connect(self, node: Node) -> asyncssh.SSHClientConnection:
        """A new connection to ``node`` (kept for later sessions); raises ``NodeUnavailable``."""
        options = client_options(self.settings, self._key, self._known_hosts.current(), node)
        try:
            connection = await asyncssh.connect(node.address, node.port, options=options, config=None)
        except (TimeoutError, asyncssh.Error, OSError) as exc:
            raise self.translate(node, exc) from exc
        self._connections[node.name] = connection
        return connection

    def translate(self, node: Node, exc: BaseException) -> NodeUnavailable:
        """The one place where asyncssh/OS errors become outcomes."""
        if isinstance(exc, asyncssh.HostKeyNotVerifiable):
            pinned = [fingerprint(k) for k in self._known_hosts.pinned(node.address, node.port)]
            detail = (
                f"host key does not match the pinned key ({', '.join(pinned)})"
                if pinned
                else "no host key pinned for this node (run: gpuledger nodes trust)"
            )
            return NodeUnavailable(node.name, Outcome.HOSTKEY_MISMATCH, detail)
        if isinstance(exc, asyncssh.PermissionDenied):
            return NodeUnavailable(node.name, Outcome.AUTH_FAILED, str(exc) or "permission denied")
        if isinstance(exc, asyncio.TimeoutError | TimeoutError):
            return NodeUnavailable(node.name, Outcome.TIMEOUT, str(exc) or "timed out")
        return NodeUnavailable(node.name, Outcome.UNREACHABLE, f"{type(exc).__name__}: {exc}")

    async def discard(self, node: Node) -> None:
        connection = self._connections.pop(node.name, None)
        if connection is not None:
            connection.abort()

    async def aclose(self) -> None:
        connections, self._connections = self._connections, {}
        for connection in connections.values():
            connection.close()
        await asyncio.gather(*(c.wait_closed() for c in connections.values()), return_exceptions=True)


async def offered_host_key(node: Node, timeout_s: float = 10.0) -> asyncssh.SSHKey:
    """The host key ``node`` presents, fetched without authenticating and without trusting it.

    Only ``gpuledger nodes trust`` calls this, to show the fingerprint an operator then confirms.
    """
    try:
        key = await asyncio.wait_for(
            asyncssh.get_server_host_key(node.address, node.port, config=None), timeout_s
        )
    except (TimeoutError, asyncssh.Error, OSError) as exc:
        outcome = Outcome.TIMEOUT if isinstance(exc, TimeoutError) else Outcome.UNREACHABLE
        raise NodeUnavailable(node.name, outcome, f"{type(exc).__name__}: {exc}") from exc
    if key is None:
        raise NodeUnavailable(node.name, Outcome.UNREACHABLE, "the server presented no host key")
    return key
