"""Exports for auditors: CSV, hledger and Beancount, all implementing ``ledger.exports.abc.Exporter`` (a copy of
the ledger carrying its chain head); and FOCUS, a cost report of the usage charges for FinOps tools (no chain
head: it is not a copy of the ledger)."""

from __future__ import annotations

from ledger.exports.abc import Exporter
from ledger.exports.beancount_file import BeancountExporter
from ledger.exports.csv_file import CsvExporter
from ledger.exports.focus_file import FocusExporter
from ledger.exports.hledger_journal import HledgerExporter

EXPORTERS: dict[str, type[Exporter]] = {e.name: e for e in (CsvExporter, HledgerExporter, BeancountExporter)}
# Every format ``gpuledger export`` and ``GET /v1/exports/{format}`` offer.
FORMATS = (*sorted(EXPORTERS), FocusExporter.name)
