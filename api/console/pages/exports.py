"""Exports: a date range and a format (the ledger as CSV, hledger or Beancount; the FOCUS cost report as CSV
or Parquet), downloaded through the API's own export (GET /v1/exports/FORMAT: same stream, same range cap)."""

from __future__ import annotations

from datetime import datetime, timedelta

from starlette.responses import Response

from api.console.pages import operate
from api.console.web import page_of
from api.handlers.exports import FILE_TYPES
from api.operation import Call
from api.services import services
from ledger.exports import FORMATS


def form(call: Call) -> Response:
    page, svc = page_of(call), services(call)
    today = datetime.now(svc.ledger.config.timezone).date()
    return page.render("exports/form.html", formats=FORMATS, file_types=FILE_TYPES,
                       default_from=today.replace(day=1) if today.day > 1 else today - timedelta(days=1),
                       default_to=today + timedelta(days=1), max_days=svc.config.max_export_days)


def download(call: Call) -> Response:
    result: Response = operate.run(call, "export", {})
    return result
