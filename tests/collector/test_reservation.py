"""The reservation charge on real PostgreSQL (docs/queue.md, "Money"): a granted GPU's held time that nobody was
charged for using, in the sample's charging transaction. Grants are made through the queue's own store; the
samples go through the real Charger; every figure is exact micro-units."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import Engine, create_engine, text

from collector.charging.deltas import UsageSettings, compute
from collector.charging.posting import Charger, Fetched
from collector.charging.reservation import reservation_records
from collector.charging.samples import Sample, parse_sample
from control.leases import Lease
from control.queue import store
from control.queue.records import Decisions, GpuRef, Grant, Offer
from ledger.config import LedgerConfig
from ledger.environ import Secret
from ledger.fairshare import decayed_gpu_charges
from ledger.money import MICRO
from ledger.service import Ledger
from tests.collector.conftest import Database
from tests.collector.harness import GPU_PRICE
from tests.collector.samples import GPU0, MIG, proc, sample, to_document

HOLDER, UID = "glc-erin", 1001
OTHER, OTHER_UID = "glc-olaf", 1002
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # the baseline sample arrives; the next one 60 s later
T1 = T0 + timedelta(seconds=60)
# 0.18 an hour: 50 micro-units a held second (GPU usage: 100 a second)
RESERVATION_PRICE = (Decimal("0.18"), Decimal(3600))
GPU_0 = GpuRef("n1", 0, "a100")


@pytest.fixture
def setup(api_database: Database) -> Iterator[tuple[Ledger, Engine]]:
    engine = create_engine(api_database.app_url)
    ledger = Ledger(engine, LedgerConfig(database_url=Secret(api_database.app_url)))
    ledger.add_price("gpu", GPU_PRICE[0], GPU_PRICE[1], model_pattern="NVIDIA A100", actor="t",
                     valid_from=datetime(2020, 1, 1, tzinfo=UTC))
    for user in (HOLDER, OTHER):
        ledger.add_user(user, actor="t")
        ledger.recharge(user, 100 * MICRO, idem_key=f"r-{user}", actor="t")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO collector.node (name, address, port) VALUES ('n1', 'h', 22)"))
    yield ledger, engine
    engine.dispose()


def price_reservations(ledger: Ledger) -> None:
    ledger.add_price("reservation", RESERVATION_PRICE[0], RESERVATION_PRICE[1], model_pattern="NVIDIA A100",
                     actor="t", valid_from=datetime(2020, 1, 1, tzinfo=UTC))


def grant(engine: Engine, start: datetime, *, user: str = HOLDER, released: datetime | None = None,
          hours: int = 4) -> int:
    """A grant of GPU 0 of n1 to ``user`` at ``start`` through the queue's store, released at ``released``."""
    with engine.begin() as conn:
        request = store.submit(conn, store.NewRequest(user, None, f"nonce-{user}-{start:%H%M%S}", ("a100",), 1,
                                                      Decimal(hours)), now=start)
        store.apply(conn, Decisions(offers=(Offer(request, (GPU_0,), start + timedelta(minutes=15)),)), now=start)
        store.apply(conn, Decisions(grants=(Grant(request, (GPU_0,), start + timedelta(hours=hours)),)), now=start)
        if released is not None:
            store.end(conn, request, "released", now=released)
    return request


def fetched(s: Sample, at: datetime) -> Fetched:
    raw = json.dumps(to_document(s)).encode()
    return Fetched("n1", raw, parse_sample(raw), at, 0)


def idle(t: float) -> Sample:
    return sample(t, processes=(proc(500, UID, 10, 1, user=HOLDER),))


def using(t: float, since: float, uid: int = UID, user: str = HOLDER) -> Sample:
    """``user`` has a process on GPU 0 that started at boot-clock ``since``."""
    return sample(t, processes=(proc(500, uid, since, 1, user=user),), gpu_processes=((GPU0, 500, 1 << 30),))


def charge_minute(engine: Engine, second: Sample, first: Sample | None = None) -> Charger:
    """The baseline at boot-clock 60 s (T0), then ``second`` (boot-clock 120 s) at T1."""
    charger = Charger(engine, "CNY", UsageSettings(), reservations=True)
    charger.charge(fetched(first or idle(60), T0))
    charger.charge(fetched(second, T1))
    return charger


def rows(engine: Engine, resource: str) -> list[tuple[str, Decimal, int, str]]:
    """(billing user, quantity, amount, entry memo) of each usage row of ``resource``."""
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT b.name, u.quantity, u.amount, coalesce(e.memo, '-') FROM ledger.usage u"
            " JOIN ledger.billing_user b ON b.id = u.user_id LEFT JOIN ledger.journal_entry e ON e.usage_id = u.id"
            " WHERE u.resource = :r ORDER BY u.id"), {"r": resource})]


def spent(ledger: Ledger, user: str = HOLDER) -> int:
    return 100 * MICRO - ledger.balance(user).available


def test_off_by_default_no_price_no_reservation_rows_or_postings(setup: tuple[Ledger, Engine]) -> None:
    ledger, engine = setup
    grant(engine, T0 - timedelta(hours=1))
    charge_minute(engine, idle(120))
    assert rows(engine, "reservation") == []
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM ledger.account WHERE code LIKE 'revenues:reservation%'")
                            ).scalar_one() == 0
    assert spent(ledger) == 0


def test_an_idle_holder_pays_the_reservation_exactly(setup: tuple[Ledger, Engine]) -> None:
    ledger, engine = setup
    price_reservations(ledger)
    grant(engine, T0 - timedelta(hours=1))
    charge_minute(engine, idle(120))
    assert rows(engine, "reservation") == [(HOLDER, Decimal(60), 3000, "reservation")]  # 60 s x 50
    assert rows(engine, "gpu") == []
    assert spent(ledger) == 3000
    revenue = {r.account: r.balance for r in ledger.trial_balance().rows}
    assert revenue["revenues:reservation:nvidia-a100"] == -3000
    with engine.connect() as conn:
        hourly = conn.execute(text("SELECT resource, quantity, amount FROM ledger.usage_hourly"
                                   " WHERE resource = 'reservation'")).one()
    assert tuple(hourly) == ("reservation", Decimal(60), 3000)
    [line] = [x for x in ledger.statement(f"user:{HOLDER}", T0.date(), T0.date() + timedelta(1)
                                          ).lines if x.kind == "usage"]
    assert (line.memo, line.amount) == ("reservation", -3000)
    assert ledger.verify().ok
    with engine.connect() as conn:  # held counts as used in the queue's fair share
        assert decayed_gpu_charges(conn, half_life_s=3600, now=T1.replace(minute=0)) == {f"user:{HOLDER}": 3000}


def test_a_busy_holder_pays_usage_only(setup: tuple[Ledger, Engine]) -> None:
    ledger, engine = setup
    price_reservations(ledger)
    grant(engine, T0 - timedelta(hours=1))
    charge_minute(engine, using(120, since=10), first=using(60, since=10))
    assert rows(engine, "reservation") == []
    assert rows(engine, "gpu") == [(HOLDER, Decimal(60), 6000, "")]
    assert spent(ledger) == 6000


def test_a_half_used_interval_is_split_exactly(setup: tuple[Ledger, Engine]) -> None:
    """The job starts at boot-clock 90.5 s: 29.5 s of usage (2,950) and 30.5 s of reservation (1,525)."""
    ledger, engine = setup
    price_reservations(ledger)
    grant(engine, T0 - timedelta(hours=1))
    charge_minute(engine, using(120, since=90.5))
    assert rows(engine, "gpu") == [(HOLDER, Decimal("29.5"), 2950, "")]
    assert rows(engine, "reservation") == [(HOLDER, Decimal("30.5"), 1525, "reservation")]
    assert spent(ledger) == 2950 + 1525


def test_someone_elses_use_of_the_held_gpu_is_not_charged_to_the_holder_again(setup: tuple[Ledger, Engine]) -> None:
    """Every GPU-second is usage or reservation once: the other user pays usage for the minute they ran on the
    holder's GPU, and the holder no reservation for it."""
    ledger, engine = setup
    price_reservations(ledger)
    grant(engine, T0 - timedelta(hours=1))
    charge_minute(engine, using(120, since=10, uid=OTHER_UID, user=OTHER),
                  first=using(60, since=10, uid=OTHER_UID, user=OTHER))
    assert rows(engine, "gpu") == [(OTHER, Decimal(60), 6000, "")]
    assert rows(engine, "reservation") == []
    assert (spent(ledger), spent(ledger, OTHER)) == (0, 6000)


def test_a_grant_starting_and_ending_inside_the_interval_is_clipped(setup: tuple[Ledger, Engine]) -> None:
    """Granted 15.25 s into the minute, released 25 s later: 25 s held, 1,250; then a second holder from 50 s
    to the interval's end: 10 s, 500, to them."""
    ledger, engine = setup
    price_reservations(ledger)
    grant(engine, T0 + timedelta(seconds=15.25), released=T0 + timedelta(seconds=40.25))
    grant(engine, T0 + timedelta(seconds=50), user=OTHER)
    charge_minute(engine, idle(120))
    assert rows(engine, "reservation") == [(HOLDER, Decimal(25), 1250, "reservation"),
                                           (OTHER, Decimal(10), 500, "reservation")]
    assert (spent(ledger), spent(ledger, OTHER)) == (1250, 500)


def test_a_lease_past_its_declared_end_is_charged_to_the_end_only(setup: tuple[Ledger, Engine]) -> None:
    """A one-hour lease that ends 20 s into the minute, not yet ended by the queue's tick: 20 s."""
    ledger, engine = setup
    price_reservations(ledger)
    grant(engine, T0 + timedelta(seconds=20) - timedelta(hours=1), hours=1)
    charge_minute(engine, idle(120))
    assert rows(engine, "reservation") == [(HOLDER, Decimal(20), 1000, "reservation")]


def test_a_replayed_sample_posts_nothing_twice(setup: tuple[Ledger, Engine]) -> None:
    ledger, engine = setup
    price_reservations(ledger)
    grant(engine, T0 - timedelta(hours=1))
    charger = charge_minute(engine, idle(120))
    again = charger.charge(fetched(idle(120), T1))
    assert again.duplicate and again.entries == 0
    fresh = Charger(engine, "CNY", UsageSettings(), reservations=True)  # a restarted controller, no cache
    assert fresh.charge(fetched(idle(120), T1)).duplicate
    assert rows(engine, "reservation") == [(HOLDER, Decimal(60), 3000, "reservation")]
    assert spent(ledger) == 3000
    later = charger.charge(fetched(idle(180), T1 + timedelta(seconds=60)))  # the next minute: charged once more
    assert later.entries == 1 and spent(ledger) == 6000
    assert ledger.verify().ok


def test_a_controller_with_the_queue_off_charges_no_reservation(setup: tuple[Ledger, Engine]) -> None:
    ledger, engine = setup
    price_reservations(ledger)
    grant(engine, T0 - timedelta(hours=1))
    charger = Charger(engine, "CNY", UsageSettings())
    charger.charge(fetched(idle(60), T0))
    charger.charge(fetched(idle(120), T1))
    assert rows(engine, "reservation") == []


def test_a_mig_devices_use_counts_at_its_share_of_the_held_gpu() -> None:
    """Pure: GPU 1 is granted; a MIG device of it (3 of 7 slices) is busy the whole minute, so 3/7 of the minute
    is usage (rounded down to a nanosecond, as its usage is) and the rest, exactly, reservation."""
    def on_mig(t: float) -> Sample:
        return sample(t, processes=(proc(500, UID, 10, 1, user=HOLDER),), gpu_processes=((MIG, 500, 1 << 30),))

    result = compute(on_mig(60), on_mig(120), UsageSettings())
    [usage] = [u for u in result.usages if u.resource == "gpu"]
    assert usage.amount_ns == 60 * 10**9 * 3 // 7
    lease = Lease(7, HOLDER, "n1", 1, T0 - timedelta(hours=1), T1 + timedelta(hours=1))
    [record] = reservation_records("n1", on_mig(120), result, T1, [lease])
    assert record.quantity == Decimal(60 * 10**9 - 60 * 10**9 * 3 // 7).scaleb(-9) == Decimal("34.285714286")
    assert (record.linux_user, record.model, record.evidence["requests"]) == (HOLDER, "NVIDIA A100", [7])
    assert record.idem_key.endswith(f"/{HOLDER}/reservation/GPU-11111111-0000-0000-0000-000000000000")
    other_node = Lease(8, HOLDER, "n2", 1, lease.start, lease.end)
    assert reservation_records("n1", on_mig(120), result, T1, [other_node]) == ()


def test_roots_processes_do_not_make_a_held_gpu_busy(setup: tuple[Ledger, Engine]) -> None:
    """Xorg and nvidia-persistenced hold every GPU of some nodes all day: the holder still pays for holding."""
    ledger, engine = setup
    price_reservations(ledger)
    grant(engine, T0 - timedelta(hours=1))
    charge_minute(engine, using(120, since=10, uid=0, user="root"), first=using(60, since=10, uid=0, user="root"))
    assert rows(engine, "reservation") == [(HOLDER, Decimal(60), 3000, "reservation")]
