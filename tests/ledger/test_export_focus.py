"""The FOCUS 1.0 CSV of usage charges: the FinOps Foundation's focus-validator accepts it, and its costs
are the ledger's charges to the micro-unit."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import shutil
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

from ledger.db import reading
from ledger.exports.focus_file import COLUMNS, FocusExporter
from ledger.money import parse_amount
from ledger.records import UsageTick
from ledger.service import Ledger
from tests.ledger.conftest import cny
from tests.ledger.helpers import T0, cpu, gpu, priced

VALIDATOR = shutil.which("focus-validator", path=str(Path(sys.executable).parent))
needs_validator = pytest.mark.skipif(VALIDATOR is None, reason="focus-validator is not installed in this venv")


@pytest.fixture
def charged(ledger: Ledger) -> Ledger:
    for name in ("alice", "li_wei"):
        ledger.add_user(name, actor="admin")
        ledger.recharge(name, cny("10"), idem_key=f"r-{name}", actor="ops")
    priced(ledger)
    ledger.post_usage(UsageTick("n1", (gpu("alice/g", minute=600), cpu("alice/c", minute=600, seconds="7.25"),
                                       gpu("li_wei/g", user="li_wei", minute=601))))
    ledger.post_usage(UsageTick("n1", (gpu("alice/g2", minute=1440 + 600),)))
    return ledger


def focus(ledger: Ledger, start: date | None = None, end: date | None = None) -> str:
    out = io.StringIO()
    with reading(ledger.engine) as conn:
        FocusExporter(ledger.config.currency, ledger.config.timezone).write(conn, out, start, end)
    return out.getvalue()


def test_rows_are_the_usage_charges(charged: Ledger) -> None:
    rows = list(csv.DictReader(io.StringIO(focus(charged))))
    assert tuple(rows[0]) == COLUMNS
    assert [(r["SubAccountId"], r["ResourceType"], r["ConsumedQuantity"], r["ConsumedUnit"]) for r in rows] == [
        ("alice", "gpu", "60", "gpu-second"), ("alice", "cpu", "7.25", "core-second"),
        ("li_wei", "gpu", "60", "gpu-second"), ("alice", "gpu", "60", "gpu-second")]
    revenue = -sum(r.balance for r in charged.trial_balance().rows if r.account.startswith("revenues:"))
    assert sum(parse_amount(r["BilledCost"]) for r in rows) == revenue
    assert rows[0]["BillingAccountId"] == "liabilities:wallet:user:alice"
    assert rows[0]["ListUnitPrice"] == "0.008333333333"  # 0.50 per 60 gpu-seconds, rounded
    assert json.loads(rows[0]["Tags"])["usage-key"] and rows[0]["ChargePeriodStart"].endswith("Z")
    day = T0.date() + timedelta(days=1)
    one_day = list(csv.DictReader(io.StringIO(focus(charged, day, day + timedelta(days=1)))))
    assert [r["ChargeDescription"].split(" on ")[0] for r in one_day] == ["60 gpu-second of gpu NVIDIA A100-SXM4-80GB"]


def validate(path: Path) -> str:
    """focus-validator's verdict. It exits 0 either way, reads its currency list relative to the working
    directory (so it runs from its site-packages), and its SkuPriceId rule queries ``ChargeType``, the
    pre-1.0 name of ``ChargeCategory``: that one rule is overridden (skipped)."""
    assert VALIDATOR is not None
    spec = importlib.util.find_spec("focus_validator")
    assert spec is not None and spec.origin is not None
    overrides = path.with_name("overrides.yaml")
    overrides.write_text("overrides:\n  - SkuPriceId_Nullable\n")
    checked = subprocess.run([VALIDATOR, "--data-file", str(path), "--validate-version", "1.0", "--override-file",
                              str(overrides)], capture_output=True, text=True, check=False, timeout=300,
                             cwd=Path(spec.origin).parent.parent)
    assert checked.returncode == 0, checked.stderr
    return checked.stdout


@needs_validator
def test_focus_validator_accepts_the_export_and_rejects_a_broken_one(charged: Ledger, tmp_path: Path) -> None:
    path = tmp_path / "focus.csv"
    path.write_text(focus(charged))
    assert validate(path).strip().endswith("Validation succeeded."), validate(path)
    for good, bad in ((",Compute,", ",GPU,"), (",CNY,", ",RMB,"), ("Z,", " 08:00,")):
        broken = tmp_path / "broken.csv"
        broken.write_text(path.read_text().replace(good, bad, 1))
        assert "Validation failed!" in validate(broken), bad


def test_gpuledger_export_focus_is_the_same_report(charged: Ledger) -> None:
    """``Ledger.export("focus", ...)`` (what ``gpuledger export focus`` and ``GET /v1/exports/focus`` call) writes
    the exporter's report and carries no chain head: it is a cost report, not a copy of the ledger."""
    out = io.StringIO()
    assert charged.export("focus", out) is None
    assert out.getvalue() == focus(charged)
