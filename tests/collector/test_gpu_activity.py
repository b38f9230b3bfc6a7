"""Each GPU's activity at a sample (free, busy, idle-held, by non-root holders) and the hourly record a tick
adds it to, which the console's charts read through the published view ``collector.gpu_activity``."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy import create_engine, text

from collector.charging import retention
from collector.charging.samples import GpuProcess, Sample
from collector.nodes import gpuactivity
from collector.nodes.gpuactivity import Holder
from collector.nodes.registry import NodeReport, record_tick, sync_inventory
from collector.types import Node, Outcome
from control.nodes import TABLE
from control.presence import ControlTable
from tests.collector.conftest import Database
from tests.collector.samples import GPU0, GPU1, MIG, sample

GIB = 1 << 30


def _held(base: Sample, *procs: GpuProcess, busy: int = 0) -> Sample:
    """``base`` with these GPU processes and GPU0 at ``busy`` percent (GPU1 stays at 0 %)."""
    gpus = (replace(base.gpus[0], utilization_percent=busy), *base.gpus[1:])
    return replace(base, gpu_processes=procs, gpus=gpus)


def test_holders_are_non_root_uids_with_their_memory_added_up() -> None:
    s = _held(sample(60),
              GpuProcess(GPU0, 10, GIB, uid=1001, user="alice"),
              GpuProcess(GPU0, 11, 2 * GIB, uid=1001, user="alice"),
              GpuProcess(GPU0, 12, 300 << 20, uid=0, user="root"),        # nvidia-persistenced, Xorg
              GpuProcess(GPU1, 13, None, device_uuid=MIG, uid=1002, user="bob"),
              GpuProcess(GPU1, 14, GIB, uid=1002, user="bob"),            # no memory known for one of them
              GpuProcess(GPU1, 15, GIB, uid=None))                       # exited before /proc was read
    assert gpuactivity.holders(s) == {GPU0: (Holder(1001, "alice", 3 * GIB),), GPU1: (Holder(1002, "bob", None),)}


def test_activity_free_busy_idle_and_unknown_utilization() -> None:
    gpu = sample(60).gpus[0]
    alice = (Holder(1001, "alice", GIB),)
    assert gpuactivity.activity(replace(gpu, utilization_percent=0), ()) == "free"
    assert gpuactivity.activity(replace(gpu, utilization_percent=0), alice) == "idle_held"
    assert gpuactivity.activity(replace(gpu, utilization_percent=1), alice) == "busy"
    # NVML could not read utilization: not called idle (a driver fault must not paint a user as idle).
    assert gpuactivity.activity(replace(gpu, utilization_percent=None), alice) == "busy"


def test_a_root_only_gpu_is_free() -> None:
    s = _held(sample(60), GpuProcess(GPU0, 12, GIB, uid=0, user="root"))
    rows = gpuactivity.gpu_rows("gpu01", s, datetime(2026, 3, 1, tzinfo=UTC))
    assert [r["state"]["activity"] for r in rows] == ["free", "free"]


def test_ticks_add_up_to_the_hour_and_a_new_hour_starts_a_row(database: Database) -> None:
    engine = create_engine(database.app_url)
    with engine.begin() as conn:
        sync_inventory(conn, [Node(name="gpu01", address="127.0.0.1")], ControlTable(TABLE, "node edits"))
    alice = GpuProcess(GPU0, 10, GIB, uid=1001, user="alice")
    bob = GpuProcess(GPU0, 11, 2 * GIB, uid=1002, user="bob")
    ticks = [
        (datetime(2026, 3, 1, 9, 58, tzinfo=UTC), _held(sample(60), alice, busy=80)),
        (datetime(2026, 3, 1, 9, 59, tzinfo=UTC), _held(sample(120), alice, bob, busy=0)),
        (datetime(2026, 3, 1, 10, 0, tzinfo=UTC), _held(sample(180), busy=0)),
    ]
    for at, s in ticks:
        with engine.begin() as conn:
            record_tick(conn, [NodeReport("gpu01", Outcome.OK, at, sample=s)])
    with engine.connect() as conn:
        hours = conn.execute(text(
            "SELECT hour, uuid, model, samples, utilization_samples, utilization_sum, held_samples,"
            " idle_held_samples, memory_used_max, holders FROM collector.gpu_activity ORDER BY hour, uuid")).all()
        latest = conn.execute(text("SELECT state -> 'holders', state ->> 'activity' FROM collector.gpu_status"
                                   " WHERE uuid = :u"), {"u": GPU0}).one()
    engine.dispose()
    nine, ten = datetime(2026, 3, 1, 9, tzinfo=UTC), datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert [tuple(h) for h in hours] == [
        (nine, GPU0, "NVIDIA A100", 2, 2, 80, 2, 1, 0, ["alice", "bob"]),
        (nine, GPU1, "NVIDIA A100", 2, 2, 0, 0, 0, 0, []),
        (ten, GPU0, "NVIDIA A100", 1, 1, 0, 0, 0, 0, []),
        (ten, GPU1, "NVIDIA A100", 1, 1, 0, 0, 0, 0, []),
    ]
    assert tuple(latest) == ([], "free")


def test_a_failed_node_adds_no_hour(database: Database) -> None:
    engine = create_engine(database.app_url)
    with engine.begin() as conn:
        sync_inventory(conn, [Node(name="gpu01", address="127.0.0.1")], ControlTable(TABLE, "node edits"))
        record_tick(conn, [NodeReport("gpu01", Outcome.NONZERO_EXIT, datetime(2026, 3, 1, tzinfo=UTC),
                                      error="exit 1")])
        assert conn.execute(text("SELECT count(*) FROM collector.gpu_activity")).scalar_one() == 0
    engine.dispose()


def test_retention_keeps_gpu_hours_for_their_own_period(database: Database) -> None:
    engine = create_engine(database.app_url)
    kept = retention.GPU_HOURS_KEPT_DAYS
    with engine.begin() as conn:
        for days in (kept + 2, kept - 2):
            conn.execute(text(
                "INSERT INTO collector.gpu_hourly (hour, node, uuid, model, samples, utilization_samples,"
                " utilization_sum, held_samples, idle_held_samples)"
                " VALUES (date_trunc('hour', now() - make_interval(days => :d)), 'gpu01', :u, 'A100', 1, 1, 5, 0, 0)"
            ), {"d": days, "u": f"GPU-{days}"})
        assert retention.prune(conn, 30, 90).gpu_hours == 1
        left = conn.execute(text("SELECT uuid FROM collector.gpu_activity")).scalars().all()
    engine.dispose()
    assert left == [f"GPU-{kept - 2}"]
