"""The controller's tick runs the queue by the newest settings version's ``queue_`` keys (docs/queue.md,
"Configuration"), read again each tick as the tier thresholds are: a real controller tick over the real node
command (local transport) and a real PostgreSQL, the requests filed through ``control.queue.admin``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from collector.types import QueueSettings
from control import versions
from control.queue import admin
from control.queue.intake import Catalog
from control.queue.records import GpuRef, Policy
from ledger.money import MICRO
from tests.collector.conftest import Database
from tests.collector.harness import Cluster, make_nodes, remove_tree

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root (cgroups)")]
MODEL = "a100-sxm4-80gb"  # the harness's "NVIDIA A100-SXM4-80GB" as users type it


@pytest.fixture
def cluster(api_database: Database) -> Iterator[Cluster]:
    nodes, base = make_nodes(["q1"])
    cluster = Cluster(api_database, nodes, queue=QueueSettings())
    cluster.setup_ledger({"alice": 100 * MICRO})
    yield cluster
    cluster.close()
    remove_tree(base)


def _offers(cluster: Cluster) -> list[tuple[str, timedelta | None]]:
    """Each request's state and, when offered, how long its offer lasts, in id order."""
    return [(r.state, None if r.offer_expires is None else r.offer_expires - r.since)
            for r in cluster.rows("SELECT q.state, q.offer_expires, (SELECT min(since) FROM control.queue_gpu g"
                                  " WHERE g.request_id = q.id) AS since FROM control.queue_request q ORDER BY q.id")]


def _store_version(cluster: Cluster, document: dict[str, object]) -> None:
    with cluster.engine.begin() as conn:
        versions.append(conn, document, "test", "admin")


def test_the_tick_applies_the_newest_versions_queue_policy(cluster: Cluster) -> None:
    catalog = Catalog.of([GpuRef("q1", 0, MODEL), GpuRef("q1", 1, MODEL)])
    with cluster.engine.begin() as conn:
        for key in ("first", "second"):
            admin.request(conn, user="alice", project=None, body={"count": 1}, catalog=catalog, policy=Policy(),
                          now=datetime.now(UTC), key=key)
    _store_version(cluster, {"queue_max_gpus_per_user": 1, "queue_offer_seconds": 120})
    cluster.tick()
    # Two free GPUs, but one GPU per user: the second request waits; the offer lasts the version's 2 minutes.
    assert _offers(cluster) == [("offered", timedelta(seconds=120)), ("queued", None)]

    _store_version(cluster, {"queue_max_gpus_per_user": 2})   # a newer version: the default offer again
    cluster.tick()
    assert _offers(cluster) == [("offered", timedelta(seconds=120)), ("offered", timedelta(seconds=900))]
