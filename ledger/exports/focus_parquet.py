"""The FOCUS report (``ledger.exports.focus_file``) as Parquet: the same rows and values as the CSV, typed.

Costs are ``decimal128(38, 6)`` and unit prices ``decimal128(38, 12)`` (exact, never float), quantities
``decimal128(38, 18)`` (the controller's are whole nanoseconds, 9 decimals; a quantity with more decimals than
18 is refused, not rounded), times ``timestamp[ms, tz=UTC]`` holding whole seconds (Parquet has no seconds
unit), every other column UTF-8 text; an empty CSV cell is a null. focus-validator 1.0.0 expects FOCUS's
Decimal columns as pandas float64, so it reports the eight decimal columns' type rules as failed on this file
(tests/ledger/test_export_focus.py checks that these are its only complaints): exactness wins over that.
Rows are written in row groups of ``ROW_GROUP`` as they stream from the database, so memory stays flat.
pyarrow is an optional dependency (``gpuledger[parquet]``): ``require_pyarrow`` says so clearly when it is
missing, before anything is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from types import ModuleType
from typing import IO, Any
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Connection, Engine

from ledger.db import reading
from ledger.errors import LedgerError
from ledger.exports.focus_file import COLUMNS, MONEY, QUANTITIES, TIMES, UNIT_PRICES, Cell, FocusExporter

MEDIA_TYPE = "application/vnd.apache.parquet"
ROW_GROUP = 50_000
QUANTITY_SCALE = 18


class ParquetUnavailable(LedgerError):
    """pyarrow, which writes Parquet, is not installed (or does not import); ``cause`` says why."""

    code = "parquet_unavailable"

    def __init__(self, cause: str) -> None:
        super().__init__("Parquet needs pyarrow: pip install 'gpuledger[parquet]'", missing="pyarrow", cause=cause)


class UnrepresentableQuantity(LedgerError):
    """A quantity has more decimals than the Parquet column holds; rounding it would change the report."""

    code = "unrepresentable_quantity"

    def __init__(self, column: str, cause: str) -> None:
        super().__init__(f"a {column} has more than {QUANTITY_SCALE} decimals: Parquet cannot hold it exactly",
                         column=column, cause=cause)


def require_pyarrow() -> ModuleType:
    """The ``pyarrow`` module, else ``ParquetUnavailable``."""
    try:
        import pyarrow
        import pyarrow.parquet  # the writer lives in this submodule, which ``import pyarrow`` does not load
    except ImportError as exc:  # missing, or installed against a NumPy it does not import with
        raise ParquetUnavailable(str(exc)) from exc
    module: ModuleType = pyarrow  # pyarrow ships no type information
    return module


def _type(pa: ModuleType, column: str) -> Any:
    if column in MONEY:
        return pa.decimal128(38, 6)
    if column in UNIT_PRICES:
        return pa.decimal128(38, 12)
    if column in QUANTITIES:
        return pa.decimal128(38, QUANTITY_SCALE)
    if column in TIMES:
        return pa.timestamp("ms", tz="UTC")  # Parquet has no seconds unit; the values are whole seconds
    return pa.string()


def schema() -> Any:
    """The Parquet schema of the report: ``COLUMNS`` in order, typed as the module says."""
    pa = require_pyarrow()
    return pa.schema([pa.field(column, _type(pa, column)) for column in COLUMNS])


def _batch(pa: ModuleType, shape: Any, rows: Sequence[tuple[Cell, ...]]) -> Any:
    arrays = []
    for index, field in enumerate(shape):
        # an empty text cell of the CSV is a null here: FOCUS reads both as "no value"
        values = [row[index] if row[index] != "" else None for row in rows]
        try:
            arrays.append(pa.array(values, type=field.type))
        except pa.ArrowInvalid as exc:
            if field.name in QUANTITIES:
                raise UnrepresentableQuantity(field.name, str(exc)) from exc
            raise
    return pa.RecordBatch.from_arrays(arrays, schema=shape)


def write(exporter: FocusExporter, conn: Connection, out: IO[bytes], start: date | None, end: date | None) -> int:
    """Write the usage charges effective in ``[start, end)`` to ``out`` as Parquet; return how many rows."""
    pa = require_pyarrow()
    shape = schema()
    count = 0
    with pa.parquet.ParquetWriter(out, shape) as writer:
        pending: list[tuple[Cell, ...]] = []
        for row in exporter.charges(conn, start, end):
            pending.append(row)
            if len(pending) == ROW_GROUP:
                writer.write_batch(_batch(pa, shape, pending))
                count, pending = count + len(pending), []
        if pending or not count:  # a report with no charges is still a file with the schema
            writer.write_batch(_batch(pa, shape, pending))
            count += len(pending)
    return count


def export(engine: Engine, currency: str, tz: ZoneInfo, out: IO[bytes], start: date | None = None,
           end: date | None = None) -> int:
    """``write`` in one read-only transaction of its own, as ``Ledger.export("focus", ...)`` does for the CSV
    (what ``gpuledger export focus --format parquet`` and ``GET /v1/exports/focus`` with the Parquet media type
    call)."""
    require_pyarrow()  # before the transaction: a missing pyarrow is a clear error, not a rolled back read
    with reading(engine) as conn:
        return write(FocusExporter(currency, tz), conn, out, start, end)
