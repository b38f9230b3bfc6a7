"""How long the controller keeps what it writes: samples (evidence), and decisions, ticks and unaccounted
gaps (its records). Each prune keeps what the controller still needs: a node's baseline sample and the
samples of records not yet posted; the latest quota and GPU verb per (node, uid), which say whom it
restricted (``collector.prune_records``, migration c0002). GPU hours (the console's history) are kept for
``GPU_HOURS_KEPT_DAYS``, so a year's charts can be drawn next to the same months of the year before."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Connection

GPU_HOURS_KEPT_DAYS = 400


@dataclass(frozen=True)
class Pruned:
    samples: int
    decisions: int
    ticks: int
    unaccounted: int
    gpu_hours: int


def prune_samples(conn: Connection, days: int) -> int:
    """Delete evidence older than ``days``, except what charging still needs. Posted kept records go with it."""
    conn.execute(
        text("DELETE FROM collector.usage_outbox WHERE state = 'posted'"
             " AND posted_at < now() - make_interval(days => :d)"),
        {"d": days},
    )
    return int(conn.execute(
        text(
            "DELETE FROM collector.sample s WHERE s.received_at < now() - make_interval(days => :d)"
            " AND NOT EXISTS (SELECT 1 FROM collector.node n WHERE n.charged_sample_id = s.id)"
            " AND NOT EXISTS (SELECT 1 FROM collector.usage_outbox o WHERE o.sample_id = s.id)"
        ),
        {"d": days},
    ).rowcount)


def prune(conn: Connection, sample_days: int, record_days: int) -> Pruned:
    samples = prune_samples(conn, sample_days)
    row = conn.execute(text("SELECT * FROM collector.prune_records(:d)"), {"d": record_days}).one()
    gpu_hours = conn.execute(text("DELETE FROM collector.gpu_hourly WHERE hour < now() - make_interval(days => :d)"),
                             {"d": GPU_HOURS_KEPT_DAYS}).rowcount
    return Pruned(samples, int(row.decisions), int(row.ticks), int(row.unaccounted), int(gpu_hours))
