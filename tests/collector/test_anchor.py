"""The controller publishes the chain head every tick, to its log and its anchor file (issue #13), and
``audit verify --anchor-file`` catches the tail of the chain cut off later."""

from __future__ import annotations

import io
import logging
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from collector import anchor
from collector.anchor import AnchorLog
from collector.config import ControllerConfig
from ledger import chain
from ledger.money import MICRO
from tests.collector.conftest import Database
from tests.collector.harness import Cluster, make_nodes, remove_tree
from tests.harness.sshd import sshd_available
from tests.ledger.helpers import truncate_last_block

pytestmark = [pytest.mark.root, pytest.mark.skipif(not sshd_available(), reason="needs root")]


@pytest.fixture
def cluster(database: Database) -> Iterator[Cluster]:
    nodes, base = make_nodes(["n1"])
    cluster = Cluster(database, nodes)
    yield cluster
    cluster.close()
    remove_tree(base)


def _anchoring(cluster: Cluster, path: Path) -> None:
    cluster.controller.close()
    cluster.controller = cluster.make_controller(anchors=AnchorLog(path, cluster.metrics.anchor_failures))


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_every_tick_publishes_the_head_and_the_file_gains_a_line_when_it_moves(
        cluster: Cluster, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "chain-anchors"
    _anchoring(cluster, path)
    cluster.setup_ledger({"glc-anchor": 10 * MICRO})  # a recharge: block 1
    with caplog.at_level(logging.INFO, logger="gpuledger.anchor"):
        cluster.tick()
        cluster.tick()
    first = cluster.ledger.chain_head()
    assert first is not None
    published = [r.getMessage() for r in caplog.records if r.name == "gpuledger.anchor"]
    assert len(published) == 2 and all(m.endswith(f" {first.seq} {first.sha256}") for m in published)
    assert [line.split()[1:] for line in _lines(path)] == [[str(first.seq), first.sha256]]  # once: it did not move
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    cluster.ledger.recharge("glc-anchor", MICRO, idem_key="more", actor="test")
    cluster.tick()
    second = cluster.ledger.chain_head()
    assert second is not None and second.seq > first.seq
    assert [line.split()[1] for line in _lines(path)] == [str(first.seq), str(second.seq)]
    # a restarted controller goes on from the file's last line
    AnchorLog(path).publish(cluster.ledger, cluster.controller.clock())
    assert len(_lines(path)) == 2

    superuser = create_engine(cluster.database.admin_url, poolclass=NullPool)
    truncate_last_block(superuser)
    superuser.dispose()
    assert cluster.ledger.verify().ok  # nothing left in the database says what was cut...
    problems = cluster.ledger.verify(anchors=chain.read_anchors(path)).problems
    assert [(p.check, p.subject) for p in problems] == [("anchor", f"block {second.seq}")]  # ...the file does


def test_an_anchor_file_that_cannot_be_written_is_counted_and_charging_goes_on(cluster: Cluster,
                                                                               tmp_path: Path) -> None:
    _anchoring(cluster, tmp_path / "missing" / "chain-anchors")
    cluster.setup_ledger({"glc-anchor": 10 * MICRO})
    summary = cluster.tick()
    assert summary.database_ok and summary.outcomes == {"ok": 1}
    assert cluster.registry.get_sample_value("gpuledger_anchor_failures_total") == 1


def test_the_anchor_file_defaults_to_the_service_s_state_directory() -> None:
    base = {"GPULEDGER_DATABASE_URL": "postgresql+psycopg://x@h/d", "GPULEDGER_INVENTORY": "/etc/gpuledger/i.yml"}
    assert ControllerConfig.from_env(base).anchor_file is None
    state = {**base, "STATE_DIRECTORY": "/var/lib/gpuledger-controller"}
    assert ControllerConfig.from_env(state).anchor_file == Path("/var/lib/gpuledger-controller/chain-anchors")
    assert ControllerConfig.from_env({**state, "GPULEDGER_ANCHOR_FILE": "/srv/a"}).anchor_file == Path("/srv/a")
    assert ControllerConfig.from_env({**state, "GPULEDGER_ANCHOR_FILE": ""}).anchor_file is None


def test_the_anchor_line_reaches_the_service_s_stderr(cluster: Cluster) -> None:
    """The controller configures no logging; its journal (and a remote syslog behind it) still gets the line."""
    stream = io.StringIO()
    anchor.log_to(stream)
    try:
        cluster.setup_ledger({"glc-anchor": 10 * MICRO})
        AnchorLog(None).publish(cluster.ledger, cluster.controller.clock())
    finally:
        for handler in list(anchor.log.handlers):
            anchor.log.removeHandler(handler)
        anchor.log.setLevel(logging.NOTSET)
    head = cluster.ledger.chain_head()
    assert head is not None
    assert stream.getvalue().startswith("gpuledger.anchor: chain anchor ")
    assert stream.getvalue().endswith(f" {head.seq} {head.sha256}\n")
