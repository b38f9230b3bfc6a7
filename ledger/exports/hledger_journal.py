"""hledger journal (checked with ``hledger check -s ordereddates``).

Precision rules that make hledger strict enough (research: a 2-decimal commodity hides 0.004 CNY
imbalances): the commodity is declared with six decimals, every amount has six, and closing balances
are total assertions (``==``) from the database.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date
from typing import IO

from ledger.exports.abc import Account, ExportEntry, Exporter
from ledger.money import format_amount
from ledger.records import ChainHead

_TYPES = {"asset": "A", "liability": "L", "equity": "E", "revenue": "R", "expense": "X"}


def one_line(s: str) -> str:
    return re.sub(r"[\x00-\x1f\x7f;]+", " ", s).strip()


def tag_value(s: str) -> str:
    """A tag's value ends at a comma, so commas become spaces (tags are for filtering; the CSV has the text)."""
    return one_line(s.replace(",", " "))


class HledgerExporter(Exporter):
    name = "hledger"

    def _amount(self, micro: int) -> str:
        return f"{format_amount(micro)} {self.currency}"

    def header(self, out: IO[str], head: ChainHead | None, accounts: Sequence[Account], first_day: date) -> None:
        chain = f"chain head seq {head.seq} sha256 {head.sha256}" if head else "chain head none"
        out.write(f"; gpuledger export; {chain}\ndecimal-mark .\ncommodity 1,000.000000 {self.currency}\n\n")
        for a in accounts:
            out.write(f"account {a.code}  ; type: {_TYPES[a.kind]}\n")
        out.write("\n")

    def opening(self, out: IO[str], day: date, balances: Sequence[tuple[str, int]]) -> None:
        out.write(f"{day.isoformat()} * opening balances\n")
        for code, amount in balances:
            out.write(f"    {code}  {self._amount(amount)}\n")
        out.write("\n")

    def entry(self, out: IO[str], entry: ExportEntry) -> None:
        ref = f", ref:E{entry.ref_entry_id}" if entry.ref_entry_id else ""
        memo = one_line(entry.memo)
        tags = "".join(f", {name}:{tag_value(value)}" for name, value in entry.facts())
        out.write(f"{entry.day.isoformat()} * (E{entry.id}) {one_line(entry.payee).replace('|', ' ')}"
                  f" | {entry.kind}{': ' + memo if memo else ''}"
                  f"  ; ik:{tag_value(entry.idem_key)}{ref}, link:E{entry.link}{tags}\n")
        for _, code, amount in entry.postings:
            out.write(f"    {code}  {self._amount(amount)}\n")
        out.write("\n")

    def closing(self, out: IO[str], day: date, balances: Sequence[tuple[str, int]]) -> None:
        out.write(f"{day.isoformat()} * closing balance assertions (from the database)\n")
        for code, amount in balances:
            out.write(f"    {code}  {self._amount(0)} == {self._amount(amount)}\n")
