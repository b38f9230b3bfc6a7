"""Exports for auditors: CSV, hledger and Beancount, all implementing ``ledger.exports.abc.Exporter``."""

from __future__ import annotations

from ledger.exports.abc import Exporter
from ledger.exports.beancount_file import BeancountExporter
from ledger.exports.csv_file import CsvExporter
from ledger.exports.hledger_journal import HledgerExporter

EXPORTERS: dict[str, type[Exporter]] = {e.name: e for e in (CsvExporter, HledgerExporter, BeancountExporter)}
