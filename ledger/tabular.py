"""Listings and reports of the ``gpuledger`` command as an aligned table, CSV or JSON (``--format``), the one
renderer every package's CLI uses (it lives in the ledger because every package may import the ledger).

Money stays exact: an :class:`Amount` cell holds micro-units and prints as decimal text in the currency
(``105.500000``), a string in JSON too, never a float; a JSON row with amounts names its ``currency``.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, TextIO, get_args

from ledger.money import format_amount

Format = Literal["table", "csv", "json"]
FORMATS: tuple[str, ...] = get_args(Format)


@dataclass(frozen=True)
class Amount:
    """A money cell in micro-units of the configured currency."""

    micro: int


# A bool is a flag: ``yes`` or blank for people and CSV, true/false in JSON.
Cell = str | bool | int | Decimal | Amount | None


@dataclass(frozen=True)
class Rendering:
    """How to print: the ``--format`` and whether tables and CSV start with their header line."""

    format: Format = "table"
    header: bool = True
    # the configured currency, needed only by listings with Amount cells
    currency: str = ""

    @classmethod
    def from_args(cls, args: argparse.Namespace, currency: str = "") -> Rendering:
        """From the options :func:`listing_options` added."""
        return cls(args.format, not args.no_header, currency)


def listing_options(parser: argparse.ArgumentParser) -> None:
    """``--format`` and ``--no-header``, the same on every listing and report of every package."""
    parser.add_argument("--format", choices=FORMATS, default="table",
                        help="table (aligned, for people), csv or json (amounts as decimal strings)")
    parser.add_argument("--no-header", action="store_true", help="leave out the header line (table and csv)")


def _text(cell: Cell) -> str:
    if cell is None:
        return ""
    if isinstance(cell, Amount):
        return format_amount(cell.micro)
    if isinstance(cell, bool):
        return "yes" if cell else ""
    return str(cell)


def _json(cell: Cell) -> str | bool | int | None:
    # Decimal as text for the same reason as amounts: a JSON number is a float to most readers.
    if cell is None or isinstance(cell, str | int):
        return cell
    return _text(cell)


def _key(column: str) -> str:
    return column.replace(" ", "_")


def render(out: TextIO, how: Rendering, columns: Sequence[str], rows: Iterable[Sequence[Cell]],
           totals: Mapping[str, Cell] | None = None) -> None:
    """Write ``rows`` under ``columns``; ``totals`` (a report's closing figures) follow a table as lines
    ``name value CURRENCY``, and make the JSON an object ``{"rows": [...], name: value, "currency": ...}``.
    CSV holds the rows only, so that every line has the same columns."""
    grid = [list(r) for r in rows]
    for row in grid:
        if len(row) != len(columns):
            raise ValueError(f"a row has {len(row)} cells for {len(columns)} columns")
    if how.format == "json":
        _render_json(out, how, columns, grid, totals)
    elif how.format == "csv":
        writer = csv.writer(out, lineterminator="\n")
        if how.header:
            writer.writerow(columns)
        writer.writerows([_text(c) for c in row] for row in grid)
    else:
        _render_table(out, how, columns, grid)
        for name, value in (totals or {}).items():
            print(f"{name} {_text(value)}" + (f" {how.currency}" if isinstance(value, Amount) else ""), file=out)


def _render_table(out: TextIO, how: Rendering, columns: Sequence[str], grid: list[list[Cell]]) -> None:
    cells = ([list(columns)] if how.header else []) + [[_text(c) for c in row] for row in grid]
    if not cells:
        return
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    for n, r in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip(), file=out)
        if n == 0 and how.header:
            print("  ".join("-" * w for w in widths), file=out)


def _render_json(out: TextIO, how: Rendering, columns: Sequence[str], grid: list[list[Cell]],
                 totals: Mapping[str, Cell] | None) -> None:
    keys = [_key(c) for c in columns]
    objects: list[dict[str, str | int | None]] = []
    for row in grid:
        obj = {k: _json(c) for k, c in zip(keys, row, strict=True)}
        if any(isinstance(c, Amount) for c in row):
            obj["currency"] = how.currency
        objects.append(obj)
    document: object = objects
    if totals is not None:
        document = {"rows": objects, **{_key(k): _json(v) for k, v in totals.items()}, "currency": how.currency}
    json.dump(document, out, indent=2, ensure_ascii=False)
    out.write("\n")
