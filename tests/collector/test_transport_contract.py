"""One suite, every transport: the contract in collector/nodes/transport/abc.py, on a real sshd and a subprocess."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from collector.errors import NodeUnavailable
from collector.nodes.transport.abc import Transport
from collector.nodes.transport.local import LocalTransport
from collector.nodes.transport.ssh import SshSettings, SshTransport
from collector.types import Node, Outcome
from tests.collector.conftest import FakeCommand
from tests.harness.sshd import SshdNode

pytestmark = pytest.mark.anyio


@dataclass
class Reach:
    transport: Transport
    node: Node
    command: FakeCommand


@pytest.fixture(params=["ssh", "local"])
async def reach(request: pytest.FixtureRequest, tmp_path: Path, fake_command: FakeCommand) -> AsyncIterator[Reach]:
    transport: Transport
    if request.param == "ssh":
        sshd: SshdNode = request.getfixturevalue("sshd_node")
        known_hosts = tmp_path / "known_hosts"
        known_hosts.write_text(sshd.known_hosts_line() + "\n")
        settings = SshSettings(client_key=request.getfixturevalue("client_key"), known_hosts=known_hosts)
        transport = SshTransport(settings)
        node = Node(name="n1", address="127.0.0.1", port=sshd.port, ssh_user=request.getfixturevalue("node_user"))
    else:
        transport = LocalTransport(fake_command.argv)
        node = Node(name="n1", address="localhost", local=True)
    yield Reach(transport, node, fake_command)
    await transport.aclose()


WORDS = ["status-write", "it's", "$(touch /run/glc-pwned)", "a b", "; rm -rf /", "naïve", "", "--flag=1"]


async def test_verb_words_arrive_intact_and_nothing_else(reach: Reach) -> None:
    session = await reach.transport.session(reach.node)
    result = await session.run(["args", *WORDS], timeout_s=10)
    assert result.ok and result.exit_status == 0
    assert json.loads(result.stdout) == {"over_ssh": reach.node.local is False, "words": WORDS}
    assert result.verb == ("args", *WORDS) and result.node == "n1"


async def test_stdin_and_binary_stdout_round_trip(reach: Reach) -> None:
    payload = bytes(range(256)) * 300
    session = await reach.transport.session(reach.node)
    result = await session.run(["stdin"], stdin=payload, timeout_s=10)
    assert result.stdout == payload


async def test_nonzero_exit_is_a_result_with_stderr(reach: Reach) -> None:
    session = await reach.transport.session(reach.node)
    result = await session.run(["exit", "3"], timeout_s=10)
    assert (result.ok, result.exit_status) == (False, 3)
    assert "failing on purpose" in result.stderr


async def test_timeout_is_bounded_and_the_next_session_works(reach: Reach) -> None:
    session = await reach.transport.session(reach.node)
    started = time.monotonic()
    with pytest.raises(NodeUnavailable) as caught:
        await session.run(["sleep", "30"], timeout_s=1)
    # Bounded by the 1 s timeout, not by the 30 s command: a third of that leaves a busy machine room.
    assert time.monotonic() - started < 10
    assert (caught.value.outcome, caught.value.node) == (Outcome.TIMEOUT, "n1")
    fresh = await reach.transport.session(reach.node)
    assert (await fresh.run(["args"], timeout_s=10)).ok


async def test_concurrent_runs_on_one_session(reach: Reach) -> None:
    session = await reach.transport.session(reach.node)
    results = await asyncio.gather(*(session.run(["args", str(i)], timeout_s=10) for i in range(8)))
    assert [json.loads(r.stdout)["words"] for r in results] == [[str(i)] for i in range(8)]
    assert len(reach.command.runs()) == 8
