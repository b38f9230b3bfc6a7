"""A small lab for the GPU queue's API and console tests: two nodes in the collector's registry (gpu01 with
two A100s, gpu02 with one H100) and the queue's tick run on the app role with facts the test chooses, at the
real clock (the API reads it too)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from control.queue import tick
from control.queue.records import GpuFact, GpuRef, Policy
from ledger.service import Ledger

A0, A1, H0 = GpuRef("gpu01", 0, "A100"), GpuRef("gpu01", 1, "A100"), GpuRef("gpu02", 0, "H100")
GPUS = (A0, A1, H0)


def seed(admin_url: str) -> None:
    engine = create_engine(admin_url, poolclass=NullPool)
    with engine.begin() as conn:
        for node in ("gpu01", "gpu02"):
            conn.execute(text("INSERT INTO collector.node (name, address, port, status) VALUES (:n, '127.0.0.1',"
                              " 22, 'connected')"), {"n": node})
        for g in GPUS:
            conn.execute(text("INSERT INTO collector.gpu (node, uuid, index, name, seen_at) VALUES (:n, :u, :i, :m,"
                              " now())"), {"n": g.node, "u": f"GPU-{g.node}-{g.index}", "i": g.index, "m": g.model})
    engine.dispose()


def run_tick(ledger: Ledger, busy: Mapping[GpuRef, str] | None = None,
             idle: Mapping[GpuRef, bool] | None = None) -> tick.Result:
    """One tick over the lab's GPUs; ``busy``: a GPU -> the billing user with a process on it."""
    facts = [GpuFact(g, frozenset({busy[g]}) if busy and g in busy else frozenset()) for g in GPUS]
    with ledger.engine.begin() as conn:
        return tick.run(conn, (), facts, idle or {}, Policy(), datetime.now(UTC), usage={})
