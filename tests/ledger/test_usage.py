"""The controller's path: ticks of usage records, rated and posted once."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from ledger import journal
from ledger.codec import usage_payload
from ledger.db import create_app_engine
from ledger.errors import IdempotencyConflict, InvalidUsage, MissingPrice, UnitMismatch, UnknownUser
from ledger.records import PriceVersion, TickResult, UsageRecord, UsageTick
from ledger.service import Ledger
from ledger.tickplan import entry_sha256
from ledger.usage import post_ticks
from tests.ledger.conftest import cny
from tests.ledger.helpers import T0, cpu, gpu, priced


@pytest.fixture
def lab(ledger: Ledger) -> Ledger:
    for name in ("alice", "bob"):
        ledger.add_user(name, actor="admin")
    return priced(ledger)


def count(superuser: Engine, table: str) -> int:
    with superuser.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM ledger.{table}")).scalar_one())  # noqa: S608


def test_a_tick_is_charged_once_and_a_retry_changes_nothing(lab: Ledger, superuser: Engine) -> None:
    tick = UsageTick("n1", (gpu("k1"), cpu("k2"), gpu("k3", user="bob")))
    first = lab.post_usage(tick)
    assert [(o.idem_key, o.user, o.amount, o.created) for o in first.posted] == [
        ("k1", "alice", cny("0.5"), True), ("k2", "alice", cny("0.01"), True), ("k3", "bob", cny("0.5"), True)]
    tables = {t: count(superuser, t) for t in ("usage", "journal_entry", "posting", "chain_block")}
    again = lab.post_usage(tick)
    assert [(o.usage_id, o.entry_id, o.created) for o in again.posted] == [
        (o.usage_id, o.entry_id, False) for o in first.posted]
    assert {t: count(superuser, t) for t in tables} == tables
    assert lab.balance("alice").available == -cny("0.51")
    assert lab.verify().ok


def test_same_key_other_content_is_rejected_and_counted(lab: Ledger) -> None:
    lab.post_usage(UsageTick("n1", (gpu("k1"),)))
    result = lab.post_usage(UsageTick("n1", (gpu("k1", seconds="61"), gpu("k2"))))
    assert [o.idem_key for o in result.posted] == ["k2"]
    [(record, error)] = [(r.record, r.error) for r in result.rejected]
    assert isinstance(error, IdempotencyConflict) and record.idem_key == "k1"
    assert lab.idempotency_conflicts() == 1


def test_records_that_cannot_be_charged_are_rejected_with_data_and_the_rest_posted(lab: Ledger) -> None:
    bad_unit = replace(cpu("k4"), unit="core-hour")
    negative = replace(cpu("k5"), quantity=Decimal(-1))
    naive = replace(cpu("k6"), interval_start=datetime(2026, 3, 1))
    result = lab.post_usage(UsageTick("n1", (gpu("k1", model="Tesla V100"), gpu("k2", user="mallory"), bad_unit,
                                             negative, naive, gpu("k3"))))
    assert [o.idem_key for o in result.posted] == ["k3"]
    errors = {r.record.idem_key: r.error for r in result.rejected}
    assert isinstance(errors["k1"], MissingPrice) and errors["k1"].details["model"] == "Tesla V100"
    assert isinstance(errors["k2"], UnknownUser) and errors["k2"].details == {"name": "mallory", "node": "n1"}
    assert isinstance(errors["k4"], UnitMismatch)
    assert isinstance(errors["k5"], InvalidUsage) and isinstance(errors["k6"], InvalidUsage)
    # once the admin adds the price, the controller's retry of the same record charges it, once
    lab.add_price("gpu", Decimal("0.40"), Decimal(60), model_pattern="Tesla V100", actor="admin",
                  valid_from=datetime(2026, 1, 1, tzinfo=UTC))
    retry = lab.post_usage(UsageTick("n1", (gpu("k1", model="Tesla V100"), gpu("k3"))))
    assert [(o.idem_key, o.amount, o.created) for o in retry.posted] == [("k1", cny("0.4"), True),
                                                                         ("k3", cny("0.5"), False)]


def test_linux_users_map_to_billing_users_per_node_then_everywhere(lab: Ledger) -> None:
    lab.map_linux_user("*", "awang", "alice", actor="admin")
    lab.map_linux_user("n2", "awang", "bob", actor="admin")
    lab.map_linux_user("n2", "alice", "bob", actor="admin")
    on_n1 = lab.post_usage(UsageTick("n1", (gpu("a", user="awang"), gpu("b", user="alice", epoch="e2"))))
    on_n2 = lab.post_usage(UsageTick("n2", (gpu("c", user="awang"), gpu("d", user="alice", epoch="e3"))))
    assert [o.user for o in on_n1.posted] == ["alice", "alice"]
    assert [o.user for o in on_n2.posted] == ["bob", "bob"]


def test_project_members_are_charged_to_the_project_wallet(lab: Ledger) -> None:
    lab.add_project("lab1", actor="admin")
    lab.assign_project("bob", "lab1", actor="admin")
    lab.recharge("project:lab1", cny("100"), idem_key="fund", actor="pi")
    lab.post_usage(UsageTick("n1", (gpu("k1", user="bob"),)))
    assert lab.balance("project:lab1").available == cny("99.5")
    assert lab.balance("bob").available == 0
    assert lab.standings(["bob"])["bob"].available == cny("99.5")


def test_charges_telescope_within_an_epoch(lab: Ledger) -> None:
    # 1 core-second costs 0.02/60 = 0.000333... CNY: each tick's exact cost is a third of a micro-unit short
    ticks = [UsageTick("n1", (cpu(f"k{i}", minute=i, seconds="1"),)) for i in range(7)]
    amounts = [lab.post_usage(t).posted[0].amount for t in ticks]
    assert amounts == [333, 334, 333, 333, 334, 333, 333]
    assert sum(amounts) == 2333  # round(7 * 333.33...) exactly
    rows = lab.usage_report(T0.date(), T0.date().replace(day=2), by="resource")
    assert [(r.key, r.quantity, r.amount) for r in rows] == [("cpu", Decimal(7), 2333)]
    assert lab.verify().ok


def test_memory_without_a_price_is_skipped_neither_charged_nor_stored(ledger: Ledger, superuser: Engine) -> None:
    """Memory is optional to price: a memory record no price covers comes back as skipped, in every tick of the
    call it is in, whoever it bills to; the rest of the tick is still charged."""
    ledger.add_user("alice", actor="admin")
    ledger.add_price("gpu", Decimal("0.50"), Decimal(60), model_pattern="NVIDIA A100*", match="glob", actor="admin",
                     valid_from=datetime(2026, 1, 1, tzinfo=UTC))
    memory = UsageRecord("m1", "alice", "memory", Decimal("3600"), "GiB-second", T0, T0, "rss", "n1/mem/alice")
    nobody = replace(memory, idem_key="m2", linux_user="mallory", epoch="n1/mem/mallory")
    first, second = ledger.post_usage_batch([UsageTick("n1", (memory, gpu("g1"), nobody)), UsageTick("n1", (memory,))])
    assert (first.skipped, first.rejected, [o.idem_key for o in first.posted]) == ((memory, nobody), (), ["g1"])
    assert (second.skipped, second.posted, second.rejected) == ((memory,), (), ())
    assert count(superuser, "usage") == 1
    ledger.add_price("memory", Decimal("0.001"), Decimal(3600), actor="admin", valid_from=T0)
    [outcome] = ledger.post_usage(UsageTick("n1", (memory,))).posted  # once priced, the same record is charged
    assert (outcome.amount, outcome.created) == (cny("0.001"), True)
    assert ledger.verify().ok


def test_several_ticks_in_one_transaction(lab: Ledger) -> None:
    results = lab.post_usage_batch([UsageTick("n1", (gpu("a"), gpu("a"))), UsageTick("n2", (gpu("b", user="bob"),)),
                                    UsageTick("n1", (gpu("a"),))])
    assert [[(o.user, o.created) for o in r.posted] for r in results] == [
        [("alice", True), ("alice", False)], [("bob", True)], [("alice", False)]]
    assert lab.balance("alice").available == -cny("0.5")


def post_racing(lab: Ledger, tick: UsageTick, other_writes: Callable[[Ledger], object]) -> tuple[TickResult, int]:
    """Post ``tick`` while another connection's ``other_writes`` commits between our read and our write (from
    inside the price-book lookup, which runs in between); returns our result and how many reads it took."""
    other_engine = create_app_engine(lab.config.database_url.reveal())
    other = Ledger(other_engine, lab.config)
    reads = []

    def book(conn: Connection, stamp: int) -> Sequence[PriceVersion]:
        if not reads:
            other_writes(other)
        reads.append(stamp)
        return lab._book.current(conn, stamp)

    try:
        with lab.engine.begin() as conn:
            [result] = post_ticks(conn, [tick], book, "CNY")
    finally:
        other_engine.dispose()
    return result, len(reads)


def test_a_read_gone_stale_before_the_lock_is_read_again_under_it(lab: Ledger, superuser: Engine) -> None:
    """The tick path reads and rates without the writer lock; ledger.post_usage checks under it that nothing was
    written since. Here another writer's record moves the same epoch on and spends the same grant in between: our
    post must rate after it, not beside it."""
    lab.grant("alice", cny("0.6"), expires_at=None, idem_key="g1", actor="admin")
    result, reads = post_racing(lab, UsageTick("n1", (gpu("second", seconds="59"),)),
                                lambda other: other.post_usage(UsageTick("n1", (gpu("first", seconds="1"),))))
    assert reads == 2 and result.posted[0].created
    with superuser.connect() as conn:
        rows = conn.execute(text("SELECT idem_key, cumulative_quantity, amount FROM ledger.usage ORDER BY id")).all()
        grant_left = conn.execute(text("SELECT credits - debits FROM ledger.account_balance b JOIN ledger.account a"
                                       " ON a.id = b.account_id WHERE a.code LIKE '%:grant:%'")).scalar_one()
        assert conn.execute(text("SELECT count(*) FROM ledger.balance_check")).scalar() == 0
    # telescoped after the other writer's record: 1 s -> 0.008333 (rounded), 60 s in all -> 0.5
    assert [(k, Decimal(q), a) for k, q, a in rows] == [("first", Decimal(1), 8333), ("second", Decimal(60), 491667)]
    assert grant_left == cny("0.1")  # both charges came out of the grant, the second from what the first left
    assert lab.balance("alice").available == cny("0.1")
    assert lab.verify().ok


@pytest.mark.parametrize("kind", ["recharge", "grant"])
def test_a_racing_entry_without_usage_makes_the_post_read_again(lab: Ledger, kind: str) -> None:
    """A recharge or a grant is an entry with postings and no usage row: the entries' high-water mark moves, the
    first write is refused, and the second read sees the new money (a new grant is spent before the wallet)."""
    def other_writes(other: Ledger) -> object:
        if kind == "recharge":
            return other.recharge("alice", cny("5"), idem_key="r1", actor="admin")
        return other.grant("alice", cny("0.3"), expires_at=None, idem_key="g1", actor="admin")

    result, reads = post_racing(lab, UsageTick("n1", (gpu("k1"),)), other_writes)
    [outcome] = result.posted
    assert reads == 2 and outcome.created and outcome.amount == cny("0.5")
    assert outcome.entry_id is not None
    lines = [(p.account, p.amount) for p in lab.entry(outcome.entry_id).postings]
    if kind == "recharge":
        assert lines == [("liabilities:wallet:user:alice", cny("0.5")),
                         ("revenues:gpu:nvidia-a100-sxm4-80gb", -cny("0.5"))]
        assert lab.balance("alice").available == cny("4.5")
    else:
        grant = lines[0][0]
        assert grant.startswith("liabilities:wallet:user:alice:grant:")
        assert lines == [(grant, cny("0.3")), ("liabilities:wallet:user:alice", cny("0.2")),
                         ("revenues:gpu:nvidia-a100-sxm4-80gb", -cny("0.5"))]
        assert lab.balance("alice").available == -cny("0.2")
    assert lab.verify().ok


def test_racing_usage_of_another_user_makes_the_post_read_again(lab: Ledger, superuser: Engine) -> None:
    """Another user's usage changes nothing we rated from, but the marks cannot tell: one more read, same result."""
    result, reads = post_racing(lab, UsageTick("n1", (gpu("alice-1"), cpu("alice-2"))),
                                lambda other: other.post_usage(UsageTick("n2", (gpu("bob-1", user="bob"),))))
    assert reads == 2
    assert [(o.idem_key, o.user, o.amount, o.created) for o in result.posted] == [
        ("alice-1", "alice", cny("0.5"), True), ("alice-2", "alice", cny("0.01"), True)]
    assert count(superuser, "usage") == 3 and count(superuser, "journal_entry") == 3
    assert lab.balance("alice").available == -cny("0.51") and lab.balance("bob").available == -cny("0.5")
    assert lab.verify().ok


def test_a_users_grant_is_spent_once_across_the_nodes_of_a_batch(lab: Ledger) -> None:
    """Two nodes' ticks in one call charge the same wallet: the second split sees what the first took from the
    grant (each used to start from the grant's whole balance, and the batch failed the grant's floor)."""
    lab.grant("alice", cny("0.6"), expires_at=None, idem_key="g1", actor="admin")
    results = lab.post_usage_batch([UsageTick("n1", (gpu("a"),)),
                                    UsageTick("n2", (gpu("b", epoch="n2/boot/alice/gpu0"),))])
    entries = [lab.entry(o.entry_id) for r in results for o in r.posted if o.entry_id is not None]
    assert [[p.amount for p in e.postings] for e in entries] == [
        [cny("0.5"), -cny("0.5")], [cny("0.1"), cny("0.4"), -cny("0.5")]]
    assert lab.balance("alice").available == -cny("0.4")
    assert lab.verify().ok


def test_a_usage_entrys_hash_is_its_drafts_payload_hash(lab: Ledger) -> None:
    """The tick path hashes a charged record's entry payload without building a Draft: the same bytes as
    journal.payload_sha256 of the entry that post_usage writes, for the entry the database holds."""
    lab.grant("alice", cny("0.2"), expires_at=None, idem_key="g1", actor="admin")
    [outcome] = lab.post_usage(UsageTick("n1", (gpu("k1"),))).posted
    assert outcome.entry_id is not None
    entry = lab.entry(outcome.entry_id)
    digest = journal.sha256_of(usage_payload("n1", gpu("k1")))
    draft = journal.Draft(kind="usage", idem_key=entry.idem_key, effective_at=entry.effective_at,
                          postings=entry.postings, actor=entry.actor, facts={"usage_sha256": digest.hex()})
    assert len(entry.postings) == 3
    assert entry_sha256(digest, ((p.account, p.amount) for p in entry.postings)) == journal.payload_sha256(draft)
    assert entry.payload_sha256 == journal.payload_sha256(draft).hex()


def test_the_hashed_shapes_are_pinned() -> None:
    """audit verify re-hashes stored usage rows and entries: the bytes hashed must never drift (literal JSON
    here, not the functions under test)."""
    digest = bytes(range(32))
    entry = ('{"facts":{"usage_sha256":"' + digest.hex() + '"},"kind":"usage",'
             '"postings":[["user:alice",-500000],["revenue:gpu:A100",500000]],"ref":null}')
    assert entry_sha256(digest, [("user:alice", -500000), ("revenue:gpu:A100", 500000)]) == \
        hashlib.sha256(entry.encode()).digest()
    record = UsageRecord(idem_key="k", linux_user="alice", resource="gpu", quantity=Decimal("1.50"), unit="gpu-second",
                         interval_start=datetime(2026, 1, 1, tzinfo=UTC), interval_end=datetime(2026, 1, 1, 0, 1,
                                                                                                 tzinfo=UTC),
                         method="m", epoch="n1/b/alice/gpu/0", model="A100", evidence={"sample": "s", "pids": [2, 1]})
    usage = ('{"epoch":"n1/b/alice/gpu/0","evidence":{"pids":[2,1],"sample":"s"},"interval_end":'
             '"2026-01-01T00:01:00+00:00","interval_start":"2026-01-01T00:00:00+00:00","linux_user":"alice",'
             '"method":"m","model":"A100","node":"n1","quantity":"1.50","resource":"gpu","unit":"gpu-second"}')
    assert journal.sha256_of(usage_payload("n1", record)) == hashlib.sha256(usage.encode()).digest()


@pytest.mark.parametrize("doc", [
    {"stamp": 0, "prefix": "usage:", "usage": [], "postings": []},  # older than migration 0004: no marks
    {"stamp": 0, "usage_mark": 0, "entry_mark": 0, "closed_before": None, "prefix": "usage:", "usage": [],
     "postings": []},  # older than 0006: the two-letter keys
], ids=["no-marks", "two-letter-keys"])
def test_a_post_from_an_older_client_is_refused(lab: Ledger, doc: dict[str, object]) -> None:
    """An older client's document would not be read right (or not checked at all): it must not go through."""
    with lab.engine.begin() as conn:
        with pytest.raises(DBAPIError, match="older than migration 0006"):
            conn.execute(text("SELECT ledger.post_usage(CAST(:d AS jsonb))"), {"d": json.dumps(doc)})


def test_canonical_json_is_json_dumps_with_its_options() -> None:
    value = {"b": [Decimal("1.50"), datetime(2026, 3, 1, 8, tzinfo=UTC)], "a": {"z": "李伟", "y": None}, "c": 1.5}
    expected = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=journal.plain)
    assert journal.canonical_json(value) == expected == (
        '{"a":{"y":null,"z":"李伟"},"b":["1.50","2026-03-01T08:00:00+00:00"],"c":1.5}')
    with pytest.raises(TypeError):
        journal.canonical_json({"x": object()})
