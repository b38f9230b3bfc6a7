"""The tick path's pure part and its two JSON contracts, without a database: the ``ledger.post_usage`` document
(ledger.tickdoc) and the record document the outbox keeps (ledger.codec), each pinned as literal JSON."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from ledger import journal, tickdoc, tickplan
from ledger.codec import record_document, record_from_document, record_json, usage_payload
from ledger.errors import IdempotencyConflict, InvalidUsage, MissingPrice, PeriodClosed, UnknownUser
from ledger.records import PriceVersion, UsageRecord, UsageTick

T0 = datetime(2026, 3, 1, tzinfo=UTC)
T1 = T0 + timedelta(minutes=1)
A100 = "NVIDIA A100-SXM4-80GB"
SHANGHAI = ZoneInfo("Asia/Shanghai")
WALLET = "liabilities:wallet:user:alice"
GPU_PRICE = PriceVersion(7, "gpu", "NVIDIA A100*", "glob", 0, Decimal("0.50"), Decimal(60), "gpu-second",
                         datetime(2026, 1, 1, tzinfo=UTC), "admin", "")
CPU_PRICE = replace(GPU_PRICE, id=8, resource="cpu", model_pattern="", match="exact", amount=Decimal("0.02"),
                    unit="core-second")
GPU = UsageRecord("n1/b/100/alice/gpu/0", "alice", "gpu", Decimal("90"), "gpu-second", T0, T1, "nvml-sampling",
                  "n1/b/alice/gpu/0", A100, {"sample": "s1", "pids": [2, 1]})
MEMORY = UsageRecord("n1/b/100/alice/memory", "alice", "memory", Decimal("3600"), "GiB-second", T0, T1,
                     "rss-sampled", "n1/b/alice/memory")


def read(**changes: object) -> tickplan.LedgerRead:
    """alice on n1 bills to user 3, wallet 11, with a grant of 0.25 left (account 12)."""
    base = tickplan.LedgerRead(
        price_stamp=8, usage_mark=41, entry_mark=40, stored=(),
        resolved=(tickplan.Resolved("n1", "alice", 3, "alice", 11, WALLET),),
        grants={11: (tickplan.GrantLeft(12, f"{WALLET}:grant:1", None, 250000),)},
        closed_before=datetime(2026, 2, 1, tzinfo=UTC))
    return replace(base, **changes)  # type: ignore[arg-type]


def test_the_post_usage_document_is_pinned() -> None:
    """A fixed tick, read and rating state -> the exact JSON ledger.post_usage gets (migration 0006 reads these
    keys). The memory record has no price: skipped, so not in the document."""
    taken = tickplan.intake([UsageTick("n1", (GPU, MEMORY))])
    sorted_ = tickplan.sort(taken.fresh, read(), [GPU_PRICE, CPU_PRICE])
    assert [r for _, r in sorted_.skipped] == [MEMORY]
    assert tickplan.rating_needs(sorted_.priced) == (["revenues:gpu:nvidia-a100-sxm4-80gb"], [("n1/b/alice/gpu/0", 7)])
    # the epoch had 30 s: 30 -> 120 s at 0.50 a minute is 1.00 - 0.25; the grant's 0.25 is spent first
    charges = tickplan.rate(sorted_.priced, {"revenues:gpu:nvidia-a100-sxm4-80gb": 5}, {("n1/b/alice/gpu/0", 7):
                                                                                        Decimal(30)})
    digest = journal.sha256_of(usage_payload("n1", GPU)).hex()
    entry = tickplan.entry_sha256(bytes.fromhex(digest), [(f"{WALLET}:grant:1", 250000), (WALLET, 500000),
                                                          ("revenues:gpu:nvidia-a100-sxm4-80gb", -750000)]).hex()
    assert (digest, entry) == ("d831cf614bef69a770bdc7485c461fe0687a2fd0954037aa54957c0d50d599fc",
                               "9da37213d29e250a0fd02b3a9c23eb161306e048b88de330e86520e5f74c4a2a")
    assert tickdoc.encode(tickplan.document(read(), charges)) == (
        '{"price_stamp": 8, "usage_mark": 41, "entry_mark": 40, "closed_before": "2026-02-01T00:00:00+00:00",'
        ' "entry_key_prefix": "usage:", "usage": [{"idem_key": "n1/b/100/alice/gpu/0", "payload_sha256":'
        ' "d831cf614bef69a770bdc7485c461fe0687a2fd0954037aa54957c0d50d599fc", "node": "n1", "linux_user": "alice",'
        ' "user_id": 3, "account_id": 11, "resource": "gpu", "model": "NVIDIA A100-SXM4-80GB", "quantity": "90",'
        ' "unit": "gpu-second", "interval_start": "2026-03-01T00:00:00+00:00", "interval_end":'
        ' "2026-03-01T00:01:00+00:00", "method": "nvml-sampling", "evidence": {"sample": "s1", "pids": [2, 1]},'
        ' "epoch": "n1/b/alice/gpu/0", "price_version_id": 7, "cumulative_quantity": "120", "amount": 750000,'
        ' "entry_sha256": "9da37213d29e250a0fd02b3a9c23eb161306e048b88de330e86520e5f74c4a2a", "actor": "controller",'
        ' "memo": ""}],'
        ' "postings": [{"idem_key": "n1/b/100/alice/gpu/0", "line": 1, "account_id": 12, "amount": 250000},'
        ' {"idem_key": "n1/b/100/alice/gpu/0", "line": 2, "account_id": 11, "amount": 500000},'
        ' {"idem_key": "n1/b/100/alice/gpu/0", "line": 3, "account_id": 5, "amount": -750000}]}')


def test_the_record_document_is_pinned_and_is_the_hashed_shape_less_node_plus_key() -> None:
    """What the outbox keeps: exact text; and its relation to the hashed shape (test_usage pins that one)."""
    assert record_json(GPU) == (
        '{"epoch":"n1/b/alice/gpu/0","evidence":{"pids":[2,1],"sample":"s1"},"idem_key":"n1/b/100/alice/gpu/0",'
        '"interval_end":"2026-03-01T00:01:00+00:00","interval_start":"2026-03-01T00:00:00+00:00",'
        '"linux_user":"alice","method":"nvml-sampling","model":"NVIDIA A100-SXM4-80GB","quantity":"90",'
        '"resource":"gpu","unit":"gpu-second"}')
    hashed = usage_payload("n1", GPU)
    assert record_document(GPU) == {"idem_key": GPU.idem_key, **{k: v for k, v in hashed.items() if k != "node"}}


def test_a_record_read_back_hashes_as_it_did_also_from_the_outboxs_older_text() -> None:
    """A retry from the outbox must be the same record to the ledger: same hash, never a conflict. Before the
    codec the outbox wrote str(quantity) and times with their own offset: those read back to the same hash."""
    odd = replace(GPU, quantity=Decimal("1.5E+2"), interval_start=T0.astimezone(SHANGHAI),
                  interval_end=T1.astimezone(SHANGHAI))
    older = {**record_document(odd), "quantity": str(odd.quantity), "interval_start": odd.interval_start.isoformat(),
             "interval_end": odd.interval_end.isoformat()}
    assert older["quantity"] == "1.5E+2" and older["interval_start"] == "2026-03-01T08:00:00+08:00"
    for doc in (record_document(odd), older):
        back = record_from_document(doc)
        assert journal.sha256_of(usage_payload("n1", back)) == journal.sha256_of(usage_payload("n1", odd))
        assert back.quantity == odd.quantity and back.interval_start == odd.interval_start


def test_a_split_spends_unexpired_grants_earliest_first_then_the_wallet() -> None:
    grants = [tickplan._Grant(21, "g-expired", T0, 100), tickplan._Grant(22, "g-soon", T1, 30),
              tickplan._Grant(23, "g-later", None, 50)]
    wallet = tickplan.Wallet(3, "alice", 11, WALLET, grants)
    assert wallet.split(60, T0) == [(22, "g-soon", 30), (23, "g-later", 30)]
    assert wallet.split(40, T0) == [(23, "g-later", 20), (11, WALLET, 20)]
    assert [g.remaining for g in grants] == [100, 0, 0]


def test_each_record_lands_in_one_outcome() -> None:
    """Sorting against the read: written before, conflicting, skipped, closed, unknown user, no price, priced."""
    records = {
        "again": replace(GPU, idem_key="again"),
        "changed": replace(GPU, idem_key="changed"),
        "memory": MEMORY,
        "closed": replace(GPU, idem_key="closed", interval_start=T0 - timedelta(days=40),
                          interval_end=T1 - timedelta(days=40)),
        "mallory": replace(GPU, idem_key="mallory", linux_user="mallory"),
        "h100": replace(GPU, idem_key="h100", model="NVIDIA H100"),
        "cpu": UsageRecord("cpu", "alice", "cpu", Decimal(30), "core-second", T0, T1, "proc-stat", "n1/b/alice/cpu"),
    }
    taken = tickplan.intake([UsageTick("n1", tuple(records.values()))])
    digest = taken.fresh["again"].digest
    stored = (tickplan.Stored("again", digest, 90, 500, 91, "alice"),
              tickplan.Stored("changed", b"\0" * 32, 92, 500, 93, "alice"))
    sorted_ = tickplan.sort(taken.fresh, read(stored=stored), [GPU_PRICE, CPU_PRICE])
    assert [(n, o.idem_key, o.usage_id, o.created) for n, o in sorted_.written_before] == [(0, "again", 90, False)]
    assert [(x.record.idem_key, type(x.error)) for _, x in sorted_.rejected] == [
        ("changed", IdempotencyConflict), ("closed", PeriodClosed), ("mallory", UnknownUser), ("h100", MissingPrice)]
    assert [c.idem_key for c in sorted_.conflicts] == ["changed"]
    assert [r for _, r in sorted_.skipped] == [MEMORY]
    assert [(i.record.idem_key, p.id) for i, _, p in sorted_.priced] == [("cpu", 8)]


def test_a_record_repeated_in_a_call_has_its_firsts_outcome_in_each_tick() -> None:
    taken = tickplan.intake([UsageTick("n1", (GPU, MEMORY)), UsageTick("n1", (MEMORY, GPU))])
    assert taken.repeats == ((1, MEMORY.idem_key), (1, GPU.idem_key))
    sorted_ = tickplan.sort(taken.fresh, read(), [GPU_PRICE])
    charges = tickplan.rate(sorted_.priced, {"revenues:gpu:nvidia-a100-sxm4-80gb": 5}, {})
    created = tickplan.written(charges, [(GPU.idem_key, 1, 2)])
    first, second = tickplan.results([UsageTick("n1", (GPU, MEMORY)), UsageTick("n1", (MEMORY, GPU))], taken,
                                     sorted_, created)
    assert [(o.idem_key, o.created, o.amount) for o in first.posted] == [(GPU.idem_key, True, 750000)]
    assert [(o.idem_key, o.created) for o in second.posted] == [(GPU.idem_key, False)]
    assert first.skipped == second.skipped == (MEMORY,)
    assert first.rejected == second.rejected == ()


def test_evidence_that_is_not_json_data_is_refused_before_anything_is_hashed() -> None:
    odd = replace(GPU, idem_key="odd", evidence={"when": object()})
    taken = tickplan.intake([UsageTick("n1", (odd, GPU))])
    [(n, refusal)] = taken.rejected
    assert (n, refusal.record, type(refusal.error)) == (0, odd, InvalidUsage)
    assert "evidence must be JSON data" in refusal.error.message
    assert list(taken.fresh) == [GPU.idem_key] and "digest" not in vars(taken.fresh[GPU.idem_key])  # not yet hashed


HELD = UsageRecord("n1/b/100/alice/reservation/GPU-0", "alice", "reservation", Decimal("45"), "gpu-second", T0, T1,
                   "queue-grant", "n1/b/alice/reservation/GPU-0", A100, {"request": 4})
RESERVATION_PRICE = replace(GPU_PRICE, id=9, resource="reservation", amount=Decimal("0.20"))


def test_a_reservation_is_charged_to_the_holder_by_name_never_through_the_linux_map() -> None:
    """The Linux user alice on n1 bills to user 3; the billing user alice (the grant's holder) is user 5 with
    wallet 15. A reservation names the billing user, so it is charged to wallet 15, with the reservation memo."""
    taken = tickplan.intake([UsageTick("n1", (GPU, HELD))])
    assert (tickplan.billing_pairs(taken.fresh), tickplan.holders(taken.fresh)) == ([("n1", "alice")], ["alice"])
    holder = tickplan.Resolved("", "alice", 5, "alice", 15, "liabilities:wallet:user:alice2")
    sorted_ = tickplan.sort(taken.fresh, read(holders=(holder,)), [GPU_PRICE, RESERVATION_PRICE])
    assert [(i.record.resource, w.account_id, p.id) for i, w, p in sorted_.priced] == [("gpu", 11, 7),
                                                                                        ("reservation", 15, 9)]
    codes, _ = tickplan.rating_needs(sorted_.priced)
    assert codes == ["revenues:gpu:nvidia-a100-sxm4-80gb", "revenues:reservation:nvidia-a100-sxm4-80gb"]
    charges = tickplan.rate(sorted_.priced, {codes[0]: 5, codes[1]: 6}, {})
    doc = tickplan.document(read(), charges)
    # 45 s at 0.20 a minute = 0.15 exactly, credited to the reservation revenue account
    assert [(u["resource"], u["amount"], u["memo"]) for u in doc["usage"]] == [("gpu", 750000, ""),
                                                                               ("reservation", 150000, "reservation")]
    assert doc["postings"][-1] == {"idem_key": HELD.idem_key, "line": 2, "account_id": 6, "amount": -150000}


def test_a_reservation_with_no_price_is_skipped_and_one_for_nobody_refused() -> None:
    """No reservation price version: the charge is off (skipped: not charged, not stored). Priced, a holder who
    is no billing user is refused as unknown, on no node."""
    taken = tickplan.intake([UsageTick("n1", (HELD,))])
    off = tickplan.sort(taken.fresh, read(), [GPU_PRICE])
    assert ([r for _, r in off.skipped], off.priced, off.rejected) == ([HELD], (), ())
    on = tickplan.sort(taken.fresh, read(), [GPU_PRICE, RESERVATION_PRICE])
    [(_, refusal)] = on.rejected
    assert isinstance(refusal.error, UnknownUser) and refusal.error.message == "unknown user 'alice'"


def test_a_reservation_needs_its_model() -> None:
    [(_, refusal)] = tickplan.intake([UsageTick("n1", (replace(HELD, model=""),))]).rejected
    assert refusal.error.message.endswith("a GPU or reservation record needs its model")
