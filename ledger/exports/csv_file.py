"""CSV: one row per posting, columns in ``COLUMNS`` (docs/ledger.md, "Exports")."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from datetime import UTC, date
from typing import IO

from ledger.exports.abc import Account, ExportEntry, Exporter
from ledger.money import format_amount
from ledger.records import ChainHead

# The first twelve are the original columns, kept where they were; the entry's metadata (the facts the hledger
# and Beancount exports carry, ``ExportEntry.facts``) came later and is appended, so a reader that picks
# columns by position still finds what it found before.
LEDGER_COLUMNS = ("entry_id", "date", "effective_at", "kind", "idem_key", "ref_entry_id", "usage_id", "memo", "line",
                  "account", "amount", "currency")
FACT_COLUMNS = ("user", "wallet", "node", "resource", "model", "quantity", "unit", "price_version", "usage_key")
COLUMNS = (*LEDGER_COLUMNS, *FACT_COLUMNS, "link", "payee")
_NO_FACTS = ("",) * (len(FACT_COLUMNS) + 2)


def _facts(entry: ExportEntry) -> tuple[str | int, ...]:
    """``FACT_COLUMNS``, ``link`` and ``payee`` of ``entry`` (a fact it lacks is empty)."""
    facts = {name.replace("-", "_"): value for name, value in entry.facts()}
    return (*(facts.get(column, "") for column in FACT_COLUMNS), entry.link, entry.payee)


class CsvExporter(Exporter):
    """Opening balances are rows of kind ``opening`` (entry_id 0); closing balances are rows of kind
    ``closing`` (entry_id 0, the database's balance in ``amount``), which a reader skips when summing. Both leave
    the metadata columns empty."""

    name = "csv"

    def header(self, out: IO[str], head: ChainHead | None, accounts: Sequence[Account], first_day: date) -> None:
        self._csv = csv.writer(out, lineterminator="\n")
        self._csv.writerow(COLUMNS)

    def _row(self, entry_id: int, day: date, when: str, kind: str, key: str, ref: int | None, usage: int | None,
             memo: str, line: int, account: str, amount: int, facts: tuple[str | int, ...] = _NO_FACTS) -> None:
        self._csv.writerow((entry_id, day.isoformat(), when, kind, key, "" if ref is None else ref,
                            "" if usage is None else usage, memo, line, account, format_amount(amount), self.currency,
                            *facts))

    def opening(self, out: IO[str], day: date, balances: Sequence[tuple[str, int]]) -> None:
        for line, (code, amount) in enumerate(balances, start=1):
            self._row(0, day, "", "opening", "", None, None, "balances brought forward", line, code, amount)

    def entry(self, out: IO[str], entry: ExportEntry) -> None:
        when = entry.effective_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
        facts = _facts(entry)
        for line, code, amount in entry.postings:
            self._row(entry.id, entry.day, when, entry.kind, entry.idem_key, entry.ref_entry_id, entry.usage_id,
                      entry.memo, line, code, amount, facts)

    def closing(self, out: IO[str], day: date, balances: Sequence[tuple[str, int]]) -> None:
        for line, (code, amount) in enumerate(balances, start=1):
            self._row(0, day, "", "closing", "", None, None, "database balance at end of day", line, code, amount)
