"""The queue applies each (user, nonce) once (control.queue.replays): a node serves an entry again until the
controller acknowledges it, so the same operation arrives again after a lost acknowledgement or a crash. Against
the real database, through ``control.queue.tick.run``."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text

from control.queue import replays
from control.queue.records import GpuFact, GpuRef, Policy
from control.queue.tick import Op, Result, run
from tests.collector.conftest import Database
from tests.collector.queue_sim import T0

GPUS = [GpuRef("n1", 0, "a100"), GpuRef("n1", 1, "a100")]


@pytest.fixture
def engine(api_database: Database) -> Iterator[Engine]:
    app = create_engine(api_database.app_url, pool_size=1)
    yield app
    app.dispose()


def op(body: dict[str, Any], nonce: str) -> Op:
    return Op("alice", None, {**body, "nonce": nonce}, "n1", 1001)


def tick(engine: Engine, ops: Sequence[Op], minutes: int = 0) -> Result:
    with engine.begin() as conn:
        return run(conn, ops, [GpuFact(g, frozenset()) for g in GPUS], {}, Policy(), T0 + timedelta(minutes=minutes),
                   usage={})


def rows(engine: Engine, sql: str) -> list[Any]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql))]


REQUEST = {"op": "request", "models": [], "count": 1, "hours": "1", "node": None, "run": False}


def test_every_kind_of_operation_replayed_changes_nothing(engine: Engine) -> None:
    first = tick(engine, [op(REQUEST, "first-request-00")])
    [rid] = [o.request_id for o in first.outcomes]
    claim = op({"op": "claim", "id": rid}, "claim-of-first-0")
    release = op({"op": "release", "id": None}, "release-all-0000")
    tick(engine, [claim], 1)
    assert rows(engine, "SELECT state FROM control.queue_request") == [("granted",)]
    tick(engine, [release], 2)
    second = tick(engine, [op(REQUEST, "second-request-0")], 3)
    [rid2] = [o.request_id for o in second.outcomes]
    cancel = op({"op": "cancel", "id": rid2}, "cancel-second-00")
    # Every operation again, in one tick (the node served them all again), and the cancel twice in it.
    again = tick(engine, [op(REQUEST, "first-request-00"), claim, release, cancel, cancel], 4)
    assert [o.outcome for o in again.outcomes] == [
        "replayed: queued", "replayed: claimed", "replayed: released 1", "cancelled", "replayed: cancelled"]
    assert [o.request_id for o in again.outcomes] == [rid, rid, None, rid2, rid2]
    assert rows(engine, "SELECT id, state FROM control.queue_request ORDER BY id") == [(rid, "ended"), (rid2, "ended")]
    assert len(rows(engine, "SELECT * FROM control.queue_op")) == 5


def test_a_replayed_refusal_is_stored_once_and_a_nonce_is_required(engine: Engine) -> None:
    too_big = op({**REQUEST, "count": 3}, "too-big-request0")
    assert [o.outcome for o in tick(engine, [too_big, too_big]).outcomes] == [
        "refused: no node has 3 GPU(s) of any model", "replayed: refused: no node has 3 GPU(s) of any model"]
    assert rows(engine, "SELECT state FROM control.queue_request") == [("refused",)]
    bare = Op("alice", None, {"op": "cancel", "id": 1}, "n1", 1001)
    assert [o.outcome for o in tick(engine, [bare], 1).outcomes] == ["refused: the operation has no valid nonce"]
    assert len(rows(engine, "SELECT * FROM control.queue_op")) == 1


def test_the_record_is_kept_for_a_week_then_forgotten(engine: Engine) -> None:
    cancel = op({"op": "cancel", "id": 99}, "cancel-unknown-0")
    tick(engine, [cancel])
    week = int(replays.KEEP.total_seconds() // 60)
    tick(engine, [], week)
    assert len(rows(engine, "SELECT * FROM control.queue_op")) == 1
    tick(engine, [], week + 1)
    assert rows(engine, "SELECT * FROM control.queue_op") == []


def test_an_operation_the_database_refuses_is_refused_alone(engine: Engine) -> None:
    """A uid past the column's range: failing the whole tick for it would fail every tick while nodes serve it."""
    odd = Op("alice", None, {**REQUEST, "nonce": "huge-uid-request"}, "n1", 3_000_000_000)
    result = tick(engine, [odd, op(REQUEST, "plain-request-00")])
    assert [o.outcome for o in result.outcomes] == [
        "refused: the database refused it (NumericValueOutOfRange)", "queued"]
    assert rows(engine, "SELECT nonce, state FROM control.queue_request") == [("plain-request-00", "offered")]
    assert [o.outcome for o in tick(engine, [odd], 1).outcomes] == [
        "replayed: refused: the database refused it (NumericValueOutOfRange)"]
