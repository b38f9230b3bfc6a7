"""Idle-held GPU-hours count every idle spell of a grant, not only the one in progress (control0009,
``control.queue_idle_spell``): through ``control.queue.tick.run`` on a real PostgreSQL, a GPU idle 50 minutes,
busy 5, idle 50 is 100 idle minutes; each spell is clipped to the report's window; the rounding is documented
(two decimals, half to even); a written spell cannot be changed."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import IntegrityError, ProgrammingError

from control.queue import admin, store
from control.queue.records import GpuFact, GpuRef, Policy
from control.queue.tick import Op, Result, run
from tests.collector.conftest import Database
from tests.collector.queue_sim import T0

A, B = GpuRef("n1", 0, "a100"), GpuRef("n1", 1, "a100")


@pytest.fixture
def engine(api_database: Database) -> Iterator[Engine]:
    app = create_engine(api_database.app_url, pool_size=1)
    yield app
    app.dispose()


def at(minutes: float) -> Any:
    return T0 + timedelta(minutes=minutes)


def tick(engine: Engine, minutes: float, idle: Mapping[GpuRef, bool], *ops: Op) -> Result:
    with engine.begin() as conn:
        return run(conn, ops, [GpuFact(g, frozenset()) for g in (A, B)], idle, Policy(), at(minutes), usage={})


def op(user: str, body: dict[str, Any], nonce: str) -> Op:
    return Op(user, None, {**body, "nonce": nonce}, "n1", 1001)


def granted(engine: Engine, user: str, minutes: float) -> int:
    """A one-GPU grant for ``user`` (filed, then claimed a tick later); its request id."""
    filed = tick(engine, minutes, {}, op(user, {"op": "request", "models": [], "count": 1, "hours": "4",
                                                "node": None, "run": False}, f"{user}-request-0000"))
    [rid] = [o.request_id for o in filed.outcomes]
    assert rid is not None
    tick(engine, minutes, {}, op(user, {"op": "claim", "id": rid}, f"{user}-claim-000000"))
    return rid


def gpu_of(engine: Engine, rid: int) -> GpuRef:
    with engine.connect() as conn:
        request = store.get(conn, rid)
    assert request is not None
    [gpu] = request.gpus
    return gpu


def hours(engine: Engine, since: float, until: float, user: str | None = None) -> dict[str, Decimal]:
    with engine.connect() as conn:
        return store.idle_hours(conn, since=at(since), until=at(until), user=user)


def spells(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT request_id, node, gpu_index, since, until FROM control.queue_idle_spell ORDER BY since"))]


def test_idle_50_busy_5_idle_50_is_100_idle_minutes_each_spell_clipped(engine: Engine) -> None:
    alice = granted(engine, "alice", 0)
    bob = granted(engine, "bob", 0)
    gpu, other = gpu_of(engine, alice), gpu_of(engine, bob)
    tick(engine, 2, {gpu: True, other: True})            # both idle from minute 2
    tick(engine, 30, {gpu: True, other: True})
    assert spells(engine) == []                          # nothing ended yet
    tick(engine, 52, {gpu: False, other: True})          # alice's job works: her spell 2..52 is kept
    assert spells(engine) == [(alice, gpu.node, gpu.index, at(2), at(52))]
    tick(engine, 57, {gpu: True, other: True})           # idle again from 57
    # Her release at 107 ends the open spell at the GPU row's release, as before.
    tick(engine, 107, {gpu: True, other: True}, op("alice", {"op": "release", "id": alice}, "alice-release-0000"))
    assert len(spells(engine)) == 1
    # 50 + 50 minutes (the current spell alone was 50: 0.83), bob's one spell of 105 minutes until now.
    assert hours(engine, 0, 107) == {"alice": Decimal("1.67"), "bob": Decimal("1.75")}
    assert hours(engine, 0, 107, user="alice") == {"alice": Decimal("1.67")}
    assert hours(engine, 0, 107, user="carol") == {}
    # A window from 30 to 80: 22 minutes of the ended spell, 23 of the released one, bob's 50.
    assert hours(engine, 30, 80) == {"alice": Decimal("0.75"), "bob": Decimal("0.83")}
    assert hours(engine, 52, 57, user="alice") == {}     # the busy 5 minutes
    with engine.connect() as conn:
        # A statement's figure over a period not over yet counts until now, as the weekly report does.
        assert admin.idle_held(conn, "alice", since=at(30), until=at(24 * 60), now=at(80)) == Decimal("0.75")
        assert admin.idle_held(conn, "carol", since=at(0), until=at(24 * 60), now=at(80)) == Decimal("0.00")
        assert admin.idle_held(conn, "alice", since=at(200), until=at(300), now=at(100)) == Decimal("0.00")


def test_the_report_rounds_to_hundredths_half_to_even_once_per_user(engine: Engine) -> None:
    rid = granted(engine, "alice", 0)
    with engine.begin() as conn:
        # 18 s is 0.005 h, 54 s 0.015 h: each alone rounds half to even (0.00, 0.02); together they are 0.02.
        conn.execute(text("INSERT INTO control.queue_idle_spell (request_id, node, gpu_index, since, until)"
                          " VALUES (:r, 'n1', 0, :a, :a + interval '18 seconds'),"
                          " (:r, 'n1', 0, :b, :b + interval '54 seconds')"), {"r": rid, "a": at(10), "b": at(20)})
    assert hours(engine, 10, 11) == {"alice": Decimal("0.00")}
    assert hours(engine, 20, 21) == {"alice": Decimal("0.02")}
    assert hours(engine, 0, 60) == {"alice": Decimal("0.02")}   # 72 s = 0.02 h, summed exactly before rounding
    assert str(hours(engine, 0, 60)["alice"]) == "0.02"


def test_a_spell_is_a_fact_the_app_cannot_change(engine: Engine) -> None:
    rid = granted(engine, "alice", 0)
    row = {"r": rid, "a": at(10)}
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO control.queue_idle_spell (request_id, node, gpu_index, since, until)"
                          " VALUES (:r, 'n1', 0, :a, :a + interval '1 minute')"), row)
    for statement in ("UPDATE control.queue_idle_spell SET until = until + interval '1 hour'",
                      "DELETE FROM control.queue_idle_spell"):
        with engine.begin() as conn, pytest.raises(ProgrammingError, match="permission denied"):
            conn.execute(text(statement))
    for bad in ("INSERT INTO control.queue_idle_spell VALUES (:r, 'n1', 0, :a + interval '2 minutes',"
                " :a + interval '2 minutes')",                                   # no length
                "INSERT INTO control.queue_idle_spell VALUES (:r, 'n1', 0, :a, :a + interval '5 minutes')"):  # again
        with engine.begin() as conn, pytest.raises(IntegrityError):
            conn.execute(text(bad), row)
    assert len(spells(engine)) == 1
