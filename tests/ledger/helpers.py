"""Small builders shared by the ledger tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

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
