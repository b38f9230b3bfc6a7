"""The admin audit log (ledger.admin_audit: every change to users, projects, mappings, money and prices, with
its before and after), newest first, filtered by actor, action or target (prefixes), paged by id."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.responses import Response

from api.console.web import page_of
from api.operation import Call
from api.services import services
from ledger import auditlog

PAGE_ROWS = 50


def log(call: Call) -> Response:
    page, svc, p = page_of(call), services(call), call.params
    filters = {k: p[k] for k in ("actor", "action", "target") if p.get(k)}
    with svc.read() as conn:
        rows = auditlog.page(conn, **filters, before_id=p.get("before"), limit=PAGE_ROWS + 1)
    more = len(rows) > PAGE_ROWS
    rows = rows[:PAGE_ROWS]
    query = urlencode(filters)
    return page.render("audit/log.html", rows=rows, filters=filters,
                       next_before=rows[-1].id if more else None, query=query)
