"""Beancount v3 file (checked with ``bean-check``).

Account names come from ``ledger.exports.names`` (readable and reversible, so collision-free: Beancount
rejects ``li_wei``, and a naive capitalisation collided); the original code is also kept in the ``open``
metadata. Balances are asserted with ``~ 0.000000`` (the default tolerance would let a 1 micro-unit error
pass) on the day after the period, since Beancount checks a ``balance`` at the start of its date.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from typing import IO

from ledger.exports.abc import Account, ExportEntry, Exporter
from ledger.exports.names import account_name
from ledger.money import format_amount
from ledger.records import ChainHead


def quoted(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'


class BeancountExporter(Exporter):
    name = "beancount"

    def _amount(self, micro: int) -> str:
        return f"{format_amount(micro)} {self.currency}"

    def header(self, out: IO[str], head: ChainHead | None, accounts: Sequence[Account], first_day: date) -> None:
        out.write(f'option "title" "gpuledger export"\noption "operating_currency" "{self.currency}"\n'
                  'plugin "beancount.plugins.check_commodity"\nplugin "beancount.plugins.noduplicates"\n\n')
        opened = first_day.isoformat()
        out.write(f"{opened} commodity {self.currency}\n  precision: 6\n")
        for a in accounts:
            out.write(f"{opened} open {account_name(a.code)} {self.currency}\n  code: {quoted(a.code)}\n")
        if head is not None:
            out.write(f'{opened} custom "gpuledger-chain-head" {quoted(head.sha256)} {head.seq}\n')
        out.write("\n")

    def opening(self, out: IO[str], day: date, balances: Sequence[tuple[str, int]]) -> None:
        out.write(f'{day.isoformat()} * "opening" "balances brought forward"\n')
        for code, amount in balances:
            out.write(f"  {account_name(code)}  {self._amount(amount)}\n")
        out.write("\n")

    def entry(self, out: IO[str], entry: ExportEntry) -> None:
        narration = f"{entry.kind}: {entry.memo}" if entry.memo else entry.kind
        links = f"^E{entry.id}" + (f" ^E{entry.ref_entry_id}" if entry.ref_entry_id else "")
        out.write(f"{entry.day.isoformat()} * {quoted(entry.payee)} {quoted(narration)} {links}\n"
                  f"  entry-id: {quoted(f'E{entry.id}')}\n  ik: {quoted(entry.idem_key)}\n")
        if entry.ref_entry_id:
            out.write(f"  ref: {quoted(f'E{entry.ref_entry_id}')}\n")
        for name, value in entry.facts():
            out.write(f"  {name}: {quoted(value)}\n")
        for _, code, amount in entry.postings:
            out.write(f"  {account_name(code)}  {self._amount(amount)}\n")
        out.write("\n")

    def closing(self, out: IO[str], day: date, balances: Sequence[tuple[str, int]]) -> None:
        """A Beancount ``balance`` counts the account's sub-accounts too (a wallet's grants), so each
        assertion is the sum over the account and everything below it."""
        after = (day + timedelta(days=1)).isoformat()
        for code, _ in balances:
            total = sum(amount for other, amount in balances if other == code or other.startswith(code + ":"))
            out.write(f"{after} balance {account_name(code)}  {format_amount(total)} ~ 0.000000 {self.currency}\n")
