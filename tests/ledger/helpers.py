"""Small builders shared by the ledger tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

from ledger.records import UsageRecord
from ledger.service import Ledger

T0 = datetime(2026, 3, 1, tzinfo=UTC)
A100 = "NVIDIA A100-SXM4-80GB"


def priced(ledger: Ledger) -> Ledger:
    """GPU A100 0.50 per minute, CPU 0.02 per core-minute, memory 0.001 per GiB-hour, all from 2026."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    ledger.add_price("gpu", Decimal("0.50"), Decimal(60), model_pattern="NVIDIA A100*", match="glob",
                     actor="admin", valid_from=start)
    ledger.add_price("cpu", Decimal("0.02"), Decimal(60), actor="admin", valid_from=start)
    ledger.add_price("memory", Decimal("0.001"), Decimal(3600), actor="admin", valid_from=start)
    return ledger


def gpu(key: str, user: str = "alice", minute: int = 0, seconds: str = "60", model: str = A100,
        epoch: str | None = None, **evidence: Any) -> UsageRecord:
    start = T0 + timedelta(minutes=minute)
    return UsageRecord(key, user, "gpu", Decimal(seconds), "gpu-second", start, start + timedelta(minutes=1),
                       "nvml-sampling", epoch or f"n1/boot/{user}/gpu0", model, evidence or {"sample": key})


def cpu(key: str, user: str = "alice", minute: int = 0, seconds: str = "30", epoch: str | None = None) -> UsageRecord:
    start = T0 + timedelta(minutes=minute)
    return UsageRecord(key, user, "cpu", Decimal(seconds), "core-second", start, start + timedelta(minutes=1),
                       "proc-stat", epoch or f"n1/boot/{user}/cpu", evidence={"sample": key})


def tamper(superuser: Engine, *statements: str) -> None:
    """Run ``statements`` as a superuser with every ledger trigger off: what ``audit verify`` is for."""
    with superuser.begin() as conn:
        conn.execute(text("SET session_replication_role = replica"))
        for table in ("posting", "journal_entry", "usage", "account_balance", "chain_block", "price_version",
                      "grant_account"):
            conn.execute(text(f"ALTER TABLE ledger.{table} DISABLE TRIGGER ALL"))
        for statement in statements:
            conn.execute(text(statement))


def truncate_last_block(superuser: Engine) -> None:
    """Cut the chain's tail consistently: the last block, its entries and postings, and their balances."""
    cut = ("(SELECT id FROM ledger.journal_entry WHERE id > (SELECT last_entry_id FROM ledger.chain_block"
           " WHERE seq = (SELECT max(seq) - 1 FROM ledger.chain_block)))")
    balances = ("UPDATE ledger.account_balance b SET"  # noqa: S608
                " debits = debits - coalesce((SELECT sum(amount) FILTER (WHERE amount > 0) FROM ledger.posting p"
                f"  WHERE p.account_id = b.account_id AND p.entry_id IN {cut}), 0),"
                " credits = credits + coalesce((SELECT sum(amount) FILTER (WHERE amount < 0) FROM ledger.posting p"
                f"  WHERE p.account_id = b.account_id AND p.entry_id IN {cut}), 0)")
    tamper(superuser, balances,
           f"DELETE FROM ledger.posting WHERE entry_id IN {cut}",  # noqa: S608
           f"DELETE FROM ledger.journal_entry WHERE id IN {cut}",  # noqa: S608
           "DELETE FROM ledger.chain_block WHERE seq = (SELECT max(seq) FROM ledger.chain_block)")
