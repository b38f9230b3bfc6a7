"""The FOCUS 1.0 CSV of usage charges: the FinOps Foundation's focus-validator accepts it, and its costs
are the ledger's charges to the micro-unit."""

from __future__ import annotations

import argparse
import csv
import importlib.util
import io
import json
import re
import shutil
import subprocess
import sys
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from ledger import cli
from ledger.db import reading
from ledger.exports import focus_file, focus_parquet
from ledger.exports.focus_file import COLUMNS, FocusExporter
from ledger.money import parse_amount
from ledger.records import UsageTick
from ledger.service import Ledger
from tests.ledger.conftest import LedgerDatabase, cny
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


def validate(path: Path, *skipped: str) -> str:
    """focus-validator's verdict. It exits 0 either way, reads its currency list relative to the working
    directory (so it runs from its site-packages), and its SkuPriceId rule queries ``ChargeType``, the
    pre-1.0 name of ``ChargeCategory``: that one rule is overridden (skipped), and so are ``skipped``."""
    assert VALIDATOR is not None
    spec = importlib.util.find_spec("focus_validator")
    assert spec is not None and spec.origin is not None
    overrides = path.with_name("overrides.yaml")
    overrides.write_text("overrides:\n" + "".join(f"  - {rule}\n" for rule in ("SkuPriceId_Nullable", *skipped)))
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


def _pyarrow_problem() -> str | None:
    try:
        focus_parquet.require_pyarrow()
    except focus_parquet.ParquetUnavailable as exc:
        return str(exc.details["cause"])
    return None


needs_pyarrow = pytest.mark.skipif(_pyarrow_problem() is not None,
                                   reason=f"pyarrow (gpuledger[parquet]) does not import: {_pyarrow_problem()}")
# focus-validator 1.0.0 checks FOCUS's Decimal type as pandas' float64 dtype, which an exact decimal128 column
# (read by pandas as Python Decimals) is not, and an override does not stop that dtype check: these eight rules
# fail on the Parquet file, and must be its only failures. The tests check those columns themselves (decimal128,
# each value equal to the CSV's, which the validator accepts as decimals).
DECIMAL_DTYPE_RULES = tuple(f"{column}_IsDecimal" for column in sorted(
    focus_file.MONEY | focus_file.UNIT_PRICES | focus_file.QUANTITIES))


def failed_rules(verdict: str) -> set[str]:
    """The rules focus-validator's report names as failed (``<rule> failed:`` lines)."""
    assert verdict.strip().endswith(("Validation succeeded.", "Validation failed!")), verdict
    return set(re.findall(r"^(\S+) failed:$", verdict, re.MULTILINE))


def parquet(ledger: Ledger, start: date | None = None, end: date | None = None) -> bytes:
    out = io.BytesIO()
    focus_parquet.export(ledger.engine, ledger.config.currency, ledger.config.timezone, out, start, end)
    return out.getvalue()


def _expected(column: str, text: str) -> object:
    """What the Parquet cell must be, from the CSV's text of it."""
    if text == "":
        return None
    if column in focus_file.TIMES:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    if column in focus_file.MONEY | focus_file.UNIT_PRICES | focus_file.QUANTITIES:
        return Decimal(text)
    return text


@needs_pyarrow
def test_parquet_columns_are_typed_and_hold_the_csv_values_exactly(charged: Ledger) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(parquet(charged)))
    assert table.schema == focus_parquet.schema() and tuple(table.schema.names) == COLUMNS
    assert not [f.name for f in table.schema if pa.types.is_floating(f.type)]
    assert table.schema.field("BilledCost").type == pa.decimal128(38, 6)
    assert table.schema.field("ChargePeriodStart").type == pa.timestamp("ms", tz="UTC")
    rows, texts = table.to_pylist(), list(csv.DictReader(io.StringIO(focus(charged))))
    assert len(rows) == len(texts) == 4
    for row, text in zip(rows, texts, strict=True):
        assert {c: row[c] for c in COLUMNS} == {c: _expected(c, text[c]) for c in COLUMNS}
        assert row["BilledCost"].as_tuple().exponent == -6  # six decimals, as the ledger's micro-units
    revenue = -sum(r.balance for r in charged.trial_balance().rows if r.account.startswith("revenues:"))
    assert sum(parse_amount(format(r["BilledCost"], "f")) for r in rows) == revenue


@needs_pyarrow
@needs_validator
def test_focus_validator_accepts_the_parquet_export_and_rejects_a_broken_one(charged: Ledger, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "focus.parquet"
    path.write_bytes(parquet(charged))
    assert failed_rules(validate(path)) == set(DECIMAL_DTYPE_RULES)
    table = pq.read_table(path)
    at = table.schema.get_field_index("BillingCurrency")
    broken = tmp_path / "broken.parquet"
    pq.write_table(table.set_column(at, "BillingCurrency", pa.array(["RMB"] * table.num_rows)), broken)
    assert failed_rules(validate(broken)) - set(DECIMAL_DTYPE_RULES) == {"BillingCurrency_IsCurrencyCode"}


@needs_pyarrow
def test_parquet_is_written_in_row_groups_and_an_empty_period_is_a_file_with_the_schema(
        charged: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    import pyarrow.parquet as pq

    monkeypatch.setattr(focus_parquet, "ROW_GROUP", 3)
    whole = pq.ParquetFile(io.BytesIO(parquet(charged)))
    assert (whole.metadata.num_rows, whole.metadata.num_row_groups) == (4, 2)
    empty = pq.read_table(io.BytesIO(parquet(charged, date(2020, 1, 1), date(2020, 1, 2))))
    assert empty.num_rows == 0 and empty.schema == focus_parquet.schema()


@needs_pyarrow
def test_a_quantity_parquet_cannot_hold_exactly_is_refused_not_rounded(ledger: Ledger) -> None:
    ledger.add_user("alice", actor="admin")
    priced(ledger)
    posted = ledger.post_usage(UsageTick("n1", (gpu("alice/fine", seconds="60." + "0" * 18 + "1"),)))
    assert posted.posted and not posted.rejected, posted
    with pytest.raises(focus_parquet.UnrepresentableQuantity) as refused:
        parquet(ledger)
    assert refused.value.details["column"] == "ConsumedQuantity"


def _gpuledger(ledger_db: LedgerDatabase, monkeypatch: pytest.MonkeyPatch,
               capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """``gpuledger ARGV`` in this process; its status and standard error."""
    monkeypatch.setenv("GPULEDGER_DATABASE_URL", ledger_db.app_url)
    parser = argparse.ArgumentParser(prog="gpuledger")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    status = args.func(args)
    return status, capsys.readouterr().err


@needs_pyarrow
def test_gpuledger_export_focus_format_parquet_writes_the_same_report(
        charged: Ledger, ledger_db: LedgerDatabase, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    path = tmp_path / "focus.parquet"
    assert _gpuledger(ledger_db, monkeypatch, capsys, "export", "focus", "--format", "parquet", "-o", str(path)) == (
        0, "")
    assert pq.read_table(path).equals(pq.read_table(io.BytesIO(parquet(charged))))
    csv_path = tmp_path / "focus.csv"
    assert _gpuledger(ledger_db, monkeypatch, capsys, "export", "focus", "--format", "csv", "-o", str(csv_path))[0] == 0
    assert csv_path.read_text() == focus(charged)


def test_without_pyarrow_the_cli_says_what_to_install_and_writes_nothing(
        ledger: Ledger, ledger_db: LedgerDatabase, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "focus.parquet"
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # what an install without the extra sees: ImportError
    status, err = _gpuledger(ledger_db, monkeypatch, capsys, "export", "focus", "--format", "parquet", "-o", str(path))
    assert status == cli.BAD_INPUT
    assert err.strip() == "gpuledger: Parquet needs pyarrow: pip install 'gpuledger[parquet]'"
    assert not path.exists()
    status, err = _gpuledger(ledger_db, monkeypatch, capsys, "export", "csv", "--format", "parquet", "-o", str(path))
    assert status == cli.BAD_INPUT and "--format is for the focus report only" in err and not path.exists()
