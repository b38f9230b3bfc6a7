"""Charging samples in the database: one transaction per sample, retries are no-ops, reboots restart counters,
and records the ledger cannot charge yet are kept and charged once it can."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import Engine, create_engine, text

from collector.charging.deltas import UsageSettings
from collector.charging.posting import Charger, Fetched
from collector.charging.samples import Sample, parse_sample
from collector.enforcing.standing import burn_per_hour
from ledger.codec import record_json
from ledger.config import LedgerConfig
from ledger.environ import Secret
from ledger.money import MICRO
from ledger.records import UsageRecord
from ledger.service import Ledger
from tests.collector.conftest import Database
from tests.collector.harness import CPU_PRICE, GPU_PRICE
from tests.collector.samples import BOOT_B, BOOT_WALL, GPU0, S, proc, sample, to_document

USER, UID = "glc-erin", 1001
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture
def setup(database: Database) -> Iterator[tuple[Charger, Ledger, Engine]]:
    engine = create_engine(database.app_url)
    ledger = Ledger(engine, LedgerConfig(database_url=Secret(database.app_url)))
    ledger.add_price("gpu", GPU_PRICE[0], GPU_PRICE[1], model_pattern="NVIDIA A100", actor="t",
                     valid_from=datetime(2020, 1, 1, tzinfo=UTC))
    ledger.add_price("cpu", CPU_PRICE[0], CPU_PRICE[1], actor="t", valid_from=datetime(2020, 1, 1, tzinfo=UTC))
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO collector.node (name, address, port) VALUES ('n1', 'h', 22)"))
    yield Charger(engine, "CNY", UsageSettings()), ledger, engine
    engine.dispose()


def fetched(s: Sample, at: datetime) -> Fetched:
    raw = json.dumps(to_document(s)).encode()
    return Fetched("n1", raw, parse_sample(raw), at, 0)


def on_gpu(t: float, **kw: object) -> Sample:
    return sample(t, processes=(proc(500, UID, 10, 1, user=USER),), gpu_processes=((GPU0, 500, 1 << 30),), **kw)


def quantities(engine: Engine) -> list[Decimal]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT quantity FROM ledger.usage WHERE resource = 'gpu' ORDER BY id"))
        return [r.quantity for r in rows]


def test_retry_of_a_charged_sample_changes_nothing(setup: tuple[Charger, Ledger, Engine]) -> None:
    charger, ledger, engine = setup
    ledger.add_user(USER, actor="t")
    ledger.recharge(USER, 100 * MICRO, idem_key="r", actor="t")
    assert charger.charge(fetched(on_gpu(60), T0)).records == 0  # the first sample is the baseline
    second = fetched(on_gpu(120), T0 + timedelta(seconds=60))
    first_try = charger.charge(second)
    assert (first_try.records, first_try.entries, first_try.amount) == (1, 1, 6000)  # 60 GPU-s at 100 micro/s
    again = charger.charge(second)
    assert again.duplicate and again.entries == 0
    assert quantities(engine) == [Decimal(60)]
    assert ledger.balance(USER).available == 100 * MICRO - 6000


def test_reboot_restarts_counters_and_records_the_lost_tail(setup: tuple[Charger, Ledger, Engine]) -> None:
    charger, ledger, engine = setup
    ledger.add_user(USER, actor="t")
    charger.charge(fetched(on_gpu(60), T0))
    charger.charge(fetched(on_gpu(120), T0 + timedelta(seconds=60)))
    rebooted = sample(30, boot=BOOT_B, boot_wall=BOOT_WALL + 200 * S, processes=(proc(500, UID, 12, 1, user=USER),),
                      gpu_processes=((GPU0, 500, 1 << 30),))  # the same PID, a different process
    result = charger.charge(fetched(rebooted, T0 + timedelta(seconds=110)))
    assert "reboot" in result.flags
    assert quantities(engine) == [Decimal(60), Decimal(18)]
    with engine.connect() as conn:
        gap = conn.execute(text("SELECT reason, seconds FROM collector.unaccounted")).one()
        epochs = [r.epoch for r in conn.execute(text("SELECT epoch FROM ledger.usage ORDER BY id"))]
    assert (gap.reason, gap.seconds) == ("reboot", Decimal(80))
    assert epochs[0] != epochs[1]  # a new boot is a new counter epoch


def test_unknown_user_is_kept_and_charged_once_known(setup: tuple[Charger, Ledger, Engine]) -> None:
    charger, ledger, engine = setup
    charger.charge(fetched(on_gpu(60), T0))
    first = charger.charge(fetched(on_gpu(120), T0 + timedelta(seconds=60)))
    assert [code for _, code in first.rejected] == ["unknown_user"]
    ledger.add_user(USER, actor="t")
    later = charger.charge(fetched(on_gpu(180), T0 + timedelta(seconds=120)))
    assert later.rejected == () and later.entries == 2  # this sample's minute and the kept one
    assert sorted(quantities(engine)) == [Decimal(60), Decimal(60)]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT state FROM collector.usage_outbox")).scalar_one() == "posted"
    assert charger.charge(fetched(on_gpu(240), T0 + timedelta(seconds=180))).entries == 1  # not posted twice


def test_baseline_moved_by_another_controller_is_respected(setup: tuple[Charger, Ledger, Engine]) -> None:
    charger, ledger, engine = setup
    ledger.add_user(USER, actor="t")
    other = Charger(engine, "CNY", UsageSettings())
    charger.charge(fetched(on_gpu(60), T0))
    other.charge(fetched(on_gpu(120), T0 + timedelta(seconds=60)))  # our cached baseline is now stale
    charger.charge(fetched(on_gpu(150), T0 + timedelta(seconds=90)))
    assert quantities(engine) == [Decimal(60), Decimal(30)]
    late = on_gpu(100)  # older than the baseline: kept as evidence, never charged
    assert charger.charge(fetched(late, T0 + timedelta(seconds=100))).records == 0
    assert quantities(engine) == [Decimal(60), Decimal(30)]


def in_memory(t: float, rss_bytes: int) -> Sample:
    return sample(t, processes=(proc(500, UID, 10, 1, user=USER)._replace(rss_bytes=rss_bytes),))


def memory_rows(engine: Engine) -> list[tuple[Decimal, int, str]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT quantity, amount, method FROM ledger.usage WHERE resource = 'memory'"
                                 " ORDER BY id"))
        return [(r.quantity, r.amount, r.method) for r in rows]


def test_memory_is_charged_only_where_a_memory_price_exists(setup: tuple[Charger, Ledger, Engine]) -> None:
    charger, ledger, engine = setup
    ledger.add_user(USER, actor="t")
    ledger.recharge(USER, 100 * MICRO, idem_key="r", actor="t")
    charger.charge(fetched(in_memory(60, 2 << 30), T0))
    unpriced = charger.charge(fetched(in_memory(120, 4 << 30), T0 + timedelta(seconds=60)))
    assert (unpriced.records, unpriced.rejected) == (0, ())  # no memory price: no record, and no error
    assert memory_rows(engine) == []
    # 0.0036 per 3600 GiB-s = 1 micro per GiB-s, valid from the start of the next interval (prices go by it).
    ledger.add_price("memory", Decimal("0.0036"), Decimal(3600), actor="t", valid_from=T0 + timedelta(seconds=60))
    priced = charger.charge(fetched(in_memory(180, 6 << 30), T0 + timedelta(seconds=120)))
    assert (priced.records, priced.entries, priced.amount, priced.rejected) == (1, 1, 300, ())
    assert memory_rows(engine) == [(Decimal(300), 300, "rss-sampled")]  # (4 + 6) / 2 GiB for 60 s
    assert ledger.balance(USER).available == 100 * MICRO - 300


def test_burn_per_hour_sums_the_charges_of_the_hour_before_now(setup: tuple[Charger, Ledger, Engine]) -> None:
    charger, ledger, engine = setup
    ledger.add_user(USER, actor="t")
    ledger.add_user("glc-idle", actor="t")
    ledger.recharge(USER, 100 * MICRO, idem_key="r", actor="t")
    charger.charge(fetched(on_gpu(60), T0))
    charger.charge(fetched(on_gpu(120), T0 + timedelta(seconds=60)))
    charger.charge(fetched(on_gpu(180), T0 + timedelta(seconds=120)))
    with engine.connect() as conn:
        assert burn_per_hour(conn, [USER, "glc-idle"], T0 + timedelta(seconds=120)) == {USER: 12000}
        assert burn_per_hour(conn, [USER], T0 + timedelta(seconds=3660)) == {USER: 6000}  # the first hour is over
        assert burn_per_hour(conn, [USER], T0 + timedelta(seconds=60)) == {USER: 6000}  # the later one: not yet
        assert burn_per_hour(conn, [USER], T0 + timedelta(hours=2)) == {}
        assert burn_per_hour(conn, [], T0) == {}


def test_usage_of_a_closed_period_is_kept_and_no_longer_retried(database: Database,
                                                                setup: tuple[Charger, Ledger, Engine]) -> None:
    charger, ledger, engine = setup
    charger.charge(fetched(on_gpu(60), T0))
    assert [code for _, code in charger.charge(fetched(on_gpu(120), T0 + timedelta(seconds=60))).rejected] == [
        "unknown_user"]
    ledger.add_user(USER, actor="t")
    admin = Ledger(engine, LedgerConfig(database_url=Secret(database.app_url),
                                        admin_database_url=Secret(database.admin_url)))
    admin.close_period(T0.date(), actor="auditor", reason="November books")  # closed before 16:00Z that day
    late = charger.charge(fetched(on_gpu(180), T0 + timedelta(seconds=120)))
    assert [code for _, code in late.rejected] == ["period_closed"] and late.entries == 0
    with engine.connect() as conn:
        kept = conn.execute(text("SELECT state, attempts, error FROM collector.usage_outbox ORDER BY created_at")).all()
    assert [(k.state, k.attempts, k.error.split(":")[0]) for k in kept] == [
        ("rejected", 1, "unknown_user"), ("rejected", 1, "period_closed")]  # the first one was not tried again
    assert quantities(engine) == []


def test_a_kept_record_the_ledger_now_skips_leaves_the_outbox(setup: tuple[Charger, Ledger, Engine]) -> None:
    """A memory record kept from an earlier tick that no price covers: the ledger skips it (memory pricing is its
    rule), so it is neither stored nor kept to be retried for ever."""
    charger, ledger, engine = setup
    ledger.add_user(USER, actor="t")
    charger.charge(fetched(on_gpu(60), T0))
    kept = UsageRecord(f"n1/old/1/{USER}/memory", USER, "memory", Decimal(60), "GiB-second",
                       T0 - timedelta(seconds=60), T0, "rss-sampled", f"n1/old/{USER}/memory")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO collector.usage_outbox (idem_key, node, sample_id, record, state, error,"
                          " attempts) SELECT :k, 'n1', max(id), CAST(:r AS jsonb), 'rejected', 'unknown_user: ...', 1"
                          " FROM collector.sample"), {"k": kept.idem_key, "r": record_json(kept)})
    second = charger.charge(fetched(on_gpu(120), T0 + timedelta(seconds=60)))
    assert (second.records, second.entries, second.rejected) == (1, 1, ())
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM collector.usage_outbox")).scalar() == 0
    assert memory_rows(engine) == []
