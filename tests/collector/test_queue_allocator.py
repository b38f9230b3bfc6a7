"""control.queue.allocator, pure: offers, claims, expiry passing on, holds and backfill, caps, fair share, ETA."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from control.queue import allocator, priority, records
from control.queue.allocator import LEASE_ENDED, OFFER_EXPIRED, allocate
from control.queue.records import GpuFact, GpuRef, Policy, Request, State
from control.queue.store import waiting_for

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
POLICY = Policy()


def gpus(node: str, n: int, model: str = "rtx3090") -> list[GpuRef]:
    return [GpuRef(node, i, model) for i in range(n)]


def facts(refs: list[GpuRef], used: dict[GpuRef, str] | None = None) -> list[GpuFact]:
    used = used or {}
    return [GpuFact(g, frozenset({used[g]}) if g in used else frozenset()) for g in refs]


def req(rid: int, user: str, count: int = 1, at: datetime = T0, hours: Decimal = Decimal(1),
        **kw: object) -> Request:
    return Request(id=rid, user=user, project=None, models=frozenset(), count=count, hours=hours, node=None,
                   created_at=at, **kw)  # type: ignore[arg-type]


def test_a_free_gpu_is_offered_and_a_claim_by_process_turns_it_into_a_lease() -> None:
    refs = gpus("n1", 2)
    d = allocate([req(1, "alice")], facts(refs), {}, T0, POLICY)
    assert [(o.request_id, o.gpus) for o in d.offers] == [(1, (refs[0],))]
    assert d.offers[0].expires == T0 + timedelta(minutes=15)
    offered = req(1, "alice", state=State.OFFERED, gpus=(refs[0],), offer_expires=d.offers[0].expires)
    later = T0 + timedelta(minutes=2)
    d2 = allocate([offered], facts(refs, {refs[0]: "alice"}), {}, later, POLICY)
    assert [(g.request_id, g.ends) for g in d2.grants] == [(1, later + timedelta(hours=1))]
    # someone else's process on the offered GPU is no claim
    d3 = allocate([offered], facts(refs, {refs[0]: "bob"}), {}, later, POLICY)
    assert d3.grants == () and d3.ends == ()


def test_an_explicit_claim_grants_and_an_unclaimed_offer_expires_and_passes_on() -> None:
    refs = gpus("n1", 1)
    offered = req(1, "alice", state=State.OFFERED, gpus=(refs[0],), offer_expires=T0 + timedelta(minutes=15))
    assert allocate([offered], facts(refs), {}, T0 + timedelta(minutes=1), POLICY, claims={1}).grants
    waiting = req(2, "bob", at=T0 + timedelta(minutes=1))
    d = allocate([offered, waiting], facts(refs), {}, T0 + timedelta(minutes=15), POLICY)
    assert [(e.request_id, e.reason) for e in d.ends] == [(1, OFFER_EXPIRED)]
    assert [(o.request_id, o.gpus) for o in d.offers] == [(2, (refs[0],))]


def test_a_lease_ends_at_its_end_and_its_gpu_is_offered_to_the_next() -> None:
    refs = gpus("n1", 1)
    granted = req(1, "alice", state=State.GRANTED, gpus=(refs[0],), granted_at=T0, ends=T0 + timedelta(hours=1))
    d = allocate([granted, req(2, "bob")], facts(refs, {refs[0]: "alice"}), {}, T0 + timedelta(minutes=30), POLICY)
    assert d.offers == () and d.ends == ()
    assert d.estimates[0].eta == T0 + timedelta(hours=1) and "declared ends" in d.estimates[0].basis
    d = allocate([granted, req(2, "bob")], facts(refs), {}, T0 + timedelta(hours=1), POLICY)
    assert [(e.request_id, e.reason) for e in d.ends] == [(1, LEASE_ENDED)]
    assert [o.request_id for o in d.offers] == [2]


def test_a_gpu_with_a_foreign_process_is_not_free_even_at_zero_utilization() -> None:
    refs = gpus("n1", 2)
    d = allocate([req(1, "alice")], facts(refs, {refs[0]: "bob"}), {}, T0, POLICY)
    assert d.offers[0].gpus == (refs[1],)
    unknown = [GpuFact(refs[0], unknown_use=True), GpuFact(refs[1], unknown_use=True)]
    assert allocate([req(1, "alice")], unknown, {}, T0, POLICY).offers == ()


def test_a_multi_gpu_head_holds_and_only_shorter_requests_backfill() -> None:
    refs = gpus("n1", 4)
    ends = T0 + timedelta(hours=2)
    running = [req(10 + i, "carol", state=State.GRANTED, gpus=(refs[i],), granted_at=T0, ends=ends) for i in (2, 3)]
    head = req(1, "alice", count=4, at=T0 - timedelta(hours=5))
    short = req(2, "bob", hours=Decimal(1))
    long = req(3, "dave", hours=Decimal(3))
    d = allocate([*running, head, short, long], facts(refs, {refs[2]: "carol", refs[3]: "carol"}), {}, T0, POLICY)
    hold = next(h for h in d.holds if h.request_id == 1)
    assert hold.completes == ends
    # bob ends before the hold completes and backfills one held GPU; dave would not, and gets nothing
    assert [(o.request_id, o.gpus) for o in d.offers] == [(2, (refs[0],))]
    assert hold.gpus == (refs[1],)
    assert {e.request_id: e.eta for e in d.estimates}[1] == ends


def test_caps_per_user_and_project() -> None:
    refs = gpus("n1", 8)
    policy = replace(POLICY, max_gpus_per_user=2, max_gpus_per_project=3)
    mine = [req(1, "alice", count=2), req(2, "alice")]
    d = allocate(mine, facts(refs), {}, T0, policy)
    assert [o.request_id for o in d.offers] == [1]
    team = [replace(req(i, f"u{i}", count=2), project="vision") for i in (1, 2)]
    assert len(allocate(team, facts(refs), {}, T0, policy).offers) == 1


def test_fair_share_puts_the_light_user_first_and_age_wins_in_the_end() -> None:
    heavy, light = req(1, "heavy"), req(2, "light", at=T0 + timedelta(minutes=1))
    usage = {"user:heavy": Decimal(1000), "user:light": Decimal(0)}
    now = T0 + timedelta(minutes=2)
    assert [r.id for r in priority.order([heavy, light], usage, now, POLICY)] == [2, 1]
    # heavy's factor 2^-2 (its share is one half): 6 h of boost against light's 24 h; 19 h more waiting wins
    fs = priority.factors([heavy, light], usage, POLICY)
    assert fs == {"user:heavy": 0.25, "user:light": 1.0}
    late = replace(light, created_at=T0 + timedelta(hours=19))
    assert [r.id for r in priority.order([heavy, late], usage, T0 + timedelta(hours=19), POLICY)] == [1, 2]
    # ties go first come first served
    assert [r.id for r in priority.order([req(2, "b"), req(1, "a")], {}, T0, POLICY)] == [1, 2]


def test_shares_set_per_project_weigh_the_factor() -> None:
    a = replace(req(1, "x"), project="a")
    b = replace(req(2, "y"), project="b")
    usage = {"project:a": Decimal(1), "project:b": Decimal(1)}
    policy = replace(POLICY, shares={"project:a": Decimal(3), "project:b": Decimal(1)})
    fs = priority.factors([a, b], usage, policy)
    assert fs["project:a"] > fs["project:b"]


def test_extension_waits_for_nobody() -> None:
    refs = gpus("n1", 1)
    granted = req(1, "alice", state=State.GRANTED, gpus=(refs[0],), granted_at=T0, ends=T0 + timedelta(hours=1))
    assert waiting_for([granted], granted) == 0
    assert waiting_for([granted, req(2, "bob")], granted) == 1
    assert waiting_for([granted, replace(req(2, "bob"), models=frozenset({"a100"}))], granted) == 0


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_several_models_find_the_node_the_walk_finds(data: st.DataObject) -> None:
    """``_Pools._best_models`` (levels per model; nodes of several free models and held nodes counted one by
    one) answers every request naming several models as walking every candidate node does, through takes and
    holds, on nodes of one model and of several."""
    models = ("a100", "h100", "l40s")
    free: set[GpuRef] = set()
    for n in range(data.draw(st.integers(1, 8), label="nodes")):
        kinds = data.draw(st.lists(st.sampled_from(models), min_size=1, max_size=8), label=f"node {n}")
        free |= {GpuRef(f"n{n}", i, m) for i, m in enumerate(kinds)}
    pools = allocator._Pools(free)
    for step in range(data.draw(st.integers(1, 12), label="steps")):
        wanted = tuple(sorted(data.draw(st.sets(st.sampled_from(models), min_size=2, max_size=3))))
        r = replace(req(step, "u", count=data.draw(st.integers(1, 4))), models=frozenset(wanted))
        ends = T0 + r.duration
        assert pools._best_models(r, wanted, ends) == pools._best_walk(r, wanted, ends)
        left = sorted(g for refs in pools.by_node.values() for g in refs)
        if not left:
            break
        some = data.draw(st.lists(st.sampled_from(left), max_size=3, unique=True))
        if data.draw(st.booleans(), label="hold"):
            completes = data.draw(st.sampled_from((None, T0 + timedelta(hours=2))))
            hold = records.Hold(100 + step, tuple(some), completes)
            for g in some:
                pools.held[g] = hold
                pools.held_on[g.node] += 1
        else:
            pools.take(some)
