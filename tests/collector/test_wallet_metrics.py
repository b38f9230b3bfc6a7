"""The allow-listed wallets' series: balance and net usage money charged, read in one query per scrape from the
real ledger, exposed through the real prometheus_client registry (text exposition parsed back)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import NullPool, create_engine, event
from sqlalchemy.engine import Engine

from collector.metrics import WalletBalances, read_wallet_figures
from ledger.config import LedgerConfig
from ledger.environ import Secret
from ledger.money import MICRO
from ledger.records import UsageTick
from ledger.service import Ledger
from tests.collector.conftest import Database
from tests.ledger.helpers import cpu, gpu, priced

GPU_MINUTE = MICRO // 2  # helpers.priced: an A100 minute costs 0.50


@pytest.fixture
def ledger(database: Database) -> Iterator[Ledger]:
    engine = create_engine(database.app_url, poolclass=NullPool)
    yield Ledger(engine, LedgerConfig(database_url=Secret(database.app_url)))
    engine.dispose()


def scrape(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    """Every sample of the exposition as {(sample name, wallet label or ""): value}, parsed as Prometheus does."""
    return {(s.name, s.labels.get("wallet", "")): s.value
            for family in text_string_to_metric_families(generate_latest(registry).decode()) for s in family.samples}


def registered(ledger: Ledger, wallets: tuple[str, ...]) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(WalletBalances(partial(read_wallet_figures, ledger.engine), wallets))
    return registry


def charge(ledger: Ledger, key: str, user: str, minute: int) -> int:
    """One A100 minute charged to ``user``'s wallet; the usage entry's id."""
    outcome = ledger.post_usage(UsageTick("n1", (gpu(key, user=user, minute=minute),))).posted[0]
    assert outcome.entry_id is not None and outcome.amount == GPU_MINUTE
    return outcome.entry_id


def test_balance_and_net_charged_money_per_allow_listed_wallet(ledger: Ledger) -> None:
    priced(ledger)
    for name in ("alice", "bob"):
        ledger.add_user(name, actor="test")
    ledger.add_project("vision", actor="test")
    ledger.assign_project("bob", "vision", actor="test")
    ledger.recharge("user:alice", 5 * MICRO, idem_key="r-alice", actor="test")
    ledger.grant("project:vision", 2 * MICRO, expires_at=datetime.now(UTC) + timedelta(days=30), idem_key="g-vision",
                 actor="test")
    registry = registered(ledger, ("user:alice", "project:vision", "user:ghost"))
    before = scrape(registry)
    assert before[("gpuledger_wallet_balance_micro", "user:alice")] == 5 * MICRO
    assert before[("gpuledger_wallet_charged_micro", "user:alice")] == 0
    assert before[("gpuledger_wallet_balance_micro", "project:vision")] == 2 * MICRO  # the grant counts
    assert not any(wallet == "user:ghost" for _, wallet in before)
    assert before[("gpuledger_wallet_balance_errors", "")] == 1

    first = charge(ledger, "a1", "alice", 0)
    second = charge(ledger, "a2", "alice", 1)
    charge(ledger, "b1", "bob", 0)  # bob is in vision: charged to the project's wallet, from its grant
    outcome = ledger.post_usage(UsageTick("n1", (cpu("a3", minute=2, seconds="7.25"),))).posted[0]
    cpu_charge = outcome.amount  # 0.02 per core-minute: 7.25 s is 2416.67 micro-units, charged as 2417
    assert cpu_charge == 2417
    refund = ledger.refund(first, GPU_MINUTE // 5, idem_key="f-1", actor="test", reason="node was slow").entry.id
    ledger.reverse(second, idem_key="v-1", actor="test", reason="double charge")
    ledger.reverse(refund, idem_key="v-2", actor="test", reason="refund was wrong")  # the refund charged again
    recharge = ledger.recharge("user:alice", MICRO, idem_key="r-alice-2", actor="test").entry.id
    ledger.reverse(recharge, idem_key="v-3", actor="test", reason="wrong wallet")  # not usage: not charged money
    after = scrape(registry)
    # a1 charged, its refund given back then reversed; a2 charged then reversed; the cpu charge
    assert after[("gpuledger_wallet_charged_micro", "user:alice")] == GPU_MINUTE + cpu_charge
    assert after[("gpuledger_wallet_balance_micro", "user:alice")] == 5 * MICRO - GPU_MINUTE - cpu_charge
    assert after[("gpuledger_wallet_charged_micro", "project:vision")] == GPU_MINUTE
    assert after[("gpuledger_wallet_balance_micro", "project:vision")] == 2 * MICRO - GPU_MINUTE
    assert ledger.balance("user:alice").available == after[("gpuledger_wallet_balance_micro", "user:alice")]


def test_a_refund_lowers_the_charged_series_which_is_therefore_a_gauge(ledger: Ledger) -> None:
    priced(ledger)
    ledger.add_user("alice", actor="test")
    ledger.recharge("user:alice", MICRO, idem_key="r", actor="test")
    entry = charge(ledger, "a1", "alice", 0)
    registry = registered(ledger, ("user:alice",))
    assert scrape(registry)[("gpuledger_wallet_charged_micro", "user:alice")] == GPU_MINUTE
    ledger.refund(entry, 1, idem_key="f", actor="test", reason="one micro-unit")
    assert scrape(registry)[("gpuledger_wallet_charged_micro", "user:alice")] == GPU_MINUTE - 1
    text = generate_latest(registry).decode()
    # a gauge: a refund lowers it, which a counter's rate() would read as a reset
    assert "# TYPE gpuledger_wallet_charged_micro gauge" in text
    assert "# HELP gpuledger_wallet_charged_micro Usage money charged" in text


def _statements(engine: Engine) -> list[str]:
    seen: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    return seen


@pytest.mark.parametrize("wallets", [1, 40])
def test_one_query_per_scrape_whatever_the_number_of_wallets(ledger: Ledger, wallets: int) -> None:
    priced(ledger)
    names = [f"u{n}" for n in range(wallets)]
    for n, name in enumerate(names):
        ledger.add_user(name, actor="test")
        ledger.recharge(name, MICRO, idem_key=f"r-{name}", actor="test")
        charge(ledger, f"k-{name}", name, n)
    registry = registered(ledger, tuple(f"user:{name}" for name in names))
    statements = _statements(ledger.engine)
    exposed = scrape(registry)
    assert len(statements) == 1, statements
    assert sum(v for (name, _), v in exposed.items() if name == "gpuledger_wallet_charged_micro") == (
        wallets * GPU_MINUTE)
    assert exposed[("gpuledger_wallet_balance_errors", "")] == 0


def test_a_database_away_gives_no_series_and_counts_every_wallet(database: Database) -> None:
    url = database.app_url.replace(database.app_url.rsplit("/", 1)[1], "glc_no_such_database")
    engine = create_engine(url, poolclass=NullPool)
    try:
        registry = CollectorRegistry()
        registry.register(WalletBalances(partial(read_wallet_figures, engine), ("user:alice", "project:vision")))
        exposed = scrape(registry)
        assert exposed == {("gpuledger_wallet_balance_errors", ""): 2}
    finally:
        engine.dispose()
