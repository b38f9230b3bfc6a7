"""The queue store's reads on a real PostgreSQL: the answers' window of ended requests
(``store.standings``) is found through ``queue_request_ended`` (control0007), not a scan of every request ever
filed, and its rows are the live requests and those ended since the window's start."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import create_engine, text

from control.queue import store
from tests.collector.conftest import Database

NOW = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
ENDED = 5000


def _plan(node: object) -> list[tuple[str, str | None]]:
    """Every node of a JSON plan: (node type, index name)."""
    assert isinstance(node, dict)
    found = [(node["Node Type"], node.get("Index Name"))]
    for child in node.get("Plans", ()):
        found.extend(_plan(child))
    return found


def test_standings_finds_the_recently_ended_by_index(api_database: Database) -> None:
    engine = create_engine(api_database.admin_url)
    with engine.begin() as conn:
        # A long history of ended requests (one every 10 minutes for a month), a few live ones.
        conn.execute(text(
            "INSERT INTO control.queue_request (billing_user, nonce, models, gpu_count, hours, created_at, state,"
            " ended_at, reason) SELECT 'u' || (i % 40), 'nonce-' || lpad(i::text, 12, '0'), '{}', 1, 1,"
            " :now - i * interval '10 minutes', 'ended', :now - i * interval '10 minutes' + interval '5 minutes',"
            " 'released' FROM generate_series(1, :n) i"), {"now": NOW, "n": ENDED})
        conn.execute(text(
            "INSERT INTO control.queue_request (billing_user, nonce, models, gpu_count, hours, created_at)"
            " SELECT 'live' || i, 'live-nonce-' || lpad(i::text, 8, '0'), '{}', 1, 1, :now"
            " FROM generate_series(1, 5) i"), {"now": NOW})
        conn.execute(text("ANALYZE control.queue_request"))
    since = NOW - timedelta(hours=1)
    with engine.begin() as conn:
        standings = store.standings(conn, since=since)
        # The query store.standings runs, as the planner plans it.
        plan = conn.execute(text(
            "EXPLAIN (FORMAT JSON) SELECT q.id FROM control.queue_request q"
            " WHERE q.state IN ('queued', 'offered', 'granted') OR q.ended_at >= :since ORDER BY q.id"),
            {"since": since}).scalar_one()
    engine.dispose()
    nodes = _plan((plan if isinstance(plan, list) else json.loads(plan))[0]["Plan"])
    assert ("Bitmap Index Scan", "queue_request_ended") in nodes, nodes
    assert not any(kind == "Seq Scan" for kind, _ in nodes), nodes
    # The live five, and the six requests that ended in the last hour (request i ended 10 i - 5 minutes ago).
    assert sorted(standings) == sorted({f"live{i}" for i in range(1, 6)} | {f"u{i}" for i in range(1, 7)})
    assert sum(len(rows) for rows in standings.values()) == 5 + 6
