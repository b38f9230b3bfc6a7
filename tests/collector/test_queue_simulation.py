"""The GPU queue over random labs (Hypothesis), tick by tick through the real database, with ground truth:
no GPU granted twice, caps held, nobody passed over, offers expire and pass on, holds complete, past grants
unchanged, crashes lose nothing and grant nothing twice, and every request is served within a computed bound."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, Row, create_engine, text

from control.queue.records import GpuFact
from control.queue.tick import Op, run
from tests.collector.conftest import Database
from tests.collector.queue_sim import POLICY, T0, TICK, Arrival, Fault, Lab

ARRIVAL_TICKS = 15


@pytest.fixture
def engines(api_database: Database) -> Iterator[tuple[Engine, Engine]]:
    app = create_engine(api_database.app_url, pool_size=2)
    admin = create_engine(api_database.admin_url, pool_size=1)
    yield app, admin
    app.dispose()
    admin.dispose()


@st.composite
def labs(draw: st.DrawFn) -> tuple[tuple[tuple[str, ...], ...], int, list[Arrival], list[Fault], frozenset[int]]:
    sizes = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))
    nodes = tuple(tuple([draw(st.sampled_from(["a", "b"]))] * n) for n in sizes)
    users = draw(st.integers(2, 5))
    arrivals = draw(st.lists(st.builds(
        Arrival, tick=st.integers(0, ARRIVAL_TICKS), user=st.integers(0, users - 1), count=st.integers(1, max(sizes)),
        model=st.sampled_from([None, "a", "b"]), minutes=st.integers(2, 10),
        claims_after=st.one_of(st.none(), st.integers(0, 4)), releases_after=st.one_of(st.none(), st.integers(0, 5)),
    ), max_size=20))
    faults = draw(st.lists(st.builds(Fault, tick=st.integers(0, ARRIVAL_TICKS), ticks=st.integers(1, 4),
                                     node=st.integers(0, len(sizes) - 1),
                                     kind=st.sampled_from(["missing", "intruder"])), max_size=3))
    crashes = draw(st.frozensets(st.integers(0, ARRIVAL_TICKS + 10), max_size=3))
    return nodes, users, arrivals, faults, crashes


def bound(lab: Lab, requests: int) -> timedelta:
    """The longest any request may wait for its first offer: past the fair-share boost (its priority then
    beats every later arrival), every request ahead of it is served one after another, each for at most its
    offer and its longest lease (10 minutes) plus a tick either side; plus every tick a fault or a crash cost."""
    boost = timedelta(hours=float(POLICY.share_boost_hours))
    each = timedelta(seconds=POLICY.offer_s) + timedelta(minutes=10) + 2 * TICK
    return boost + requests * each + (lab.fault_ticks + lab.crashes + 2) * TICK


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(world=labs())
def test_random_labs_keep_every_rule(engines: tuple[Engine, Engine], world: tuple) -> None:  # type: ignore[type-arg]
    app, admin = engines
    with admin.begin() as conn:
        conn.execute(text("TRUNCATE control.queue_action, control.queue_idle_spell, control.queue_op,"
                          " control.queue_gpu, control.queue_request RESTART IDENTITY"))
    nodes, users, arrivals, faults, crashes = world
    lab = Lab(app, nodes, users)
    tick = 0
    limit = ARRIVAL_TICKS + int(bound(lab, len(arrivals)) / TICK) + 20
    while tick < limit:
        due = [a for a in arrivals if a.tick == tick]
        active = [f for f in faults if f.tick <= tick < f.tick + f.ticks]
        if tick in crashes:
            lab.tick(due, active, crash=True)
            crashes = crashes - {tick}
            continue
        lab.tick(due, active)
        tick += 1
        if tick > ARRIVAL_TICKS + 5 and not _live(app):
            break
    waits = lab.waits()
    assert not _live(app), "requests still live after the bound"
    worst = bound(lab, len(arrivals))
    assert all(w <= worst for w in waits.values()), (max(waits.values()), worst)


def _live(engine: Engine) -> int:
    with engine.begin() as conn:
        return int(conn.execute(text("SELECT count(*) FROM control.queue_request"
                                     " WHERE state IN ('queued', 'offered', 'granted')")).scalar_one())


def test_a_multi_gpu_request_behind_a_stream_of_single_ones_completes(engines: tuple[Engine, Engine]) -> None:
    """A 4-GPU request waits on a busy 4-GPU node while 1-GPU requests keep coming: its hold grows as GPUs
    free up and it is granted; the single ones after it only backfill when they end before it completes."""
    app, _ = engines
    lab = Lab(app, (("a",) * 4,), 6)
    stream = [Arrival(t, 1 + t % 5, 1, None, 5, 0) for t in range(0, 40, 2)]
    big = Arrival(3, 0, 4, None, 5, 0)
    for tick in range(120):
        lab.tick([a for a in [*stream, big] if a.tick == tick], [])
    with app.begin() as conn:
        rows = conn.execute(text("SELECT gpu_count, granted_at FROM control.queue_request WHERE gpu_count = 4")).all()
    assert len(rows) == 1 and rows[0].granted_at is not None


def _rows(engine: Engine) -> list[Row[Any]]:
    with engine.begin() as conn:
        return list(conn.execute(text(
            "SELECT q.id, q.billing_user, q.state, q.reason, q.offer_expires, q.granted_at, q.ended_at,"
            " (SELECT count(*) FROM control.queue_gpu g WHERE g.request_id = q.id AND g.kind = 'grant') AS grants"
            " FROM control.queue_request q ORDER BY q.id")).all())


def test_an_unclaimed_offer_expires_and_its_gpu_passes_to_the_next_in_line(engines: tuple[Engine, Engine]) -> None:
    """One GPU; u0 is offered it and never claims; u1, queued behind, is offered it the tick u0's offer
    expires (POLICY.offer_s = 3 ticks) and, claiming by running on it, is granted it the tick after."""
    app, _ = engines
    lab = Lab(app, (("a",),), 2)
    arrivals = [Arrival(0, 0, 1, None, 5, None), Arrival(1, 1, 1, None, 5, 0)]
    for tick in range(6):
        lab.tick([a for a in arrivals if a.tick == tick], [])
    first, second = _rows(app)
    expiry = T0 + 3 * TICK
    assert (first.billing_user, first.state, first.reason, first.ended_at) == ("u0", "ended", "offer expired", expiry)
    assert first.grants == 0 and first.offer_expires == expiry
    # Offered at the expiry (its own offer runs offer_s from there), granted the tick after.
    assert (second.billing_user, second.state, second.offer_expires, second.granted_at) == (
        "u1", "granted", expiry + 3 * TICK, expiry + TICK)
    assert second.grants == 1


def test_a_controller_killed_mid_tick_neither_loses_a_request_nor_grants_twice(engines: tuple[Engine, Engine]) -> None:
    """A tick's transaction is lost twice: once while filing the request (the same file, read again, is one
    request), once while granting it (the next tick grants it once, with one live GPU row)."""
    app, _ = engines
    lab = Lab(app, (("a", "a"),), 2)
    request = Arrival(0, 0, 2, None, 5, 0)
    lab.tick([request], [], crash=True)
    assert _rows(app) == []
    lab.tick([request], [])                     # re-read after the restart: filed and offered
    lab.tick([], [], crash=True)                # killed while granting
    (row,) = _rows(app)
    assert (row.state, row.granted_at, row.grants) == ("offered", None, 0)
    lab.tick([], [])
    lab.tick([], [])
    (row,) = _rows(app)
    assert (row.state, row.granted_at, row.grants) == ("granted", T0 + TICK, 2)
    with app.begin() as conn:               # the same file read once more, after the grant: nothing new
        again = run(conn, [Op("u0", "lab", {"op": "request", "nonce": "sim-000000-nonce-0", "models": [],
                                            "count": 2, "hours": "0.1", "node": None, "run": False}, "n0", 2000)],
                    [GpuFact(g, frozenset({"u0"})) for g in lab.gpus()], {}, POLICY, lab.now, {})
    assert [o.request_id for o in again.outcomes] == [row.id]
    assert len(_rows(app)) == 1
