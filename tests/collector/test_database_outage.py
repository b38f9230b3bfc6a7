"""The database stopped mid-tick (pg_ctl stop -m immediate) at random points: nothing is enforced while it
is away, and once it is back the usage of the whole outage is charged exactly once."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from ledger.embedded import EmbeddedPostgres
from ledger.money import MICRO
from tests.collector.conftest import migrated_database
from tests.collector.harness import MICRO_PER_GPU_SECOND, Cluster, make_nodes, remove_tree, spawn_as
from tests.harness.sshd import ensure_user, remove_user, sshd_available

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.skipif(not sshd_available(), reason="needs root")]
USER = "glc-frank"
GIB = 1 << 30


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    """A cluster of its own: this test stops it, which the session's shared cluster must never see."""
    server = EmbeddedPostgres(tmp_path / "pg").start()
    yield server
    server.stop(mode="immediate")


@pytest.fixture
def cluster(own_postgres: EmbeddedPostgres) -> Iterator[Cluster]:
    ensure_user(USER)
    nodes, base = make_nodes(["d1"])
    cluster = Cluster(migrated_database(own_postgres, "glc_outage"), nodes)
    cluster.setup_ledger({USER: 1000 * MICRO})
    yield cluster
    cluster.close()
    remove_tree(base)
    remove_user(USER)


def test_outage_mid_tick_enforces_nothing_and_catches_up_exactly(
    cluster: Cluster, own_postgres: EmbeddedPostgres
) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    job = spawn_as(USER, "sleep", "600")
    try:
        cluster.nodes["d1"].put_on_gpu("GPU-glc-0", job.pid, GIB)
        assert cluster.tick().database_ok
        for _ in range(3):
            stopper = threading.Timer(rng.uniform(0.0, 0.4), own_postgres.stop, kwargs={"mode": "immediate"})
            stopper.start()
            cluster.tick()
            stopper.join()
            down = cluster.tick()  # the database is certainly away now
            assert not down.database_ok and down.actions == 0 and down.charged == 0
            time.sleep(0.2)
            own_postgres.start()
            for _ in range(3):  # the pool notices the restart at its first use
                if cluster.tick().database_ok:
                    break
            else:
                raise AssertionError(f"the controller did not recover (seed {seed})")
    finally:
        job.kill()
        job.wait()
    first, last = cluster.rows(
        "SELECT (SELECT boottime_ns FROM collector.sample ORDER BY id LIMIT 1) AS first,"
        " (SELECT s.boottime_ns FROM collector.node n JOIN collector.sample s ON s.id = n.charged_sample_id) AS last"
    )[0]
    truth = Decimal(last - first).scaleb(-9)
    assert cluster.usage_seconds(USER, "gpu") == truth, f"seed {seed}"
    assert cluster.charged_micro(USER) == int((truth * MICRO_PER_GPU_SECOND).to_integral_value("ROUND_HALF_UP"))
    assert cluster.ledger.trial_balance().total == 0
