"""The audit logs, newest first, filtered by actor, action or target (prefixes), paged by id: the ledger's
(``ledger.auditlog``: users, projects, mappings, money, prices, period closes) or the API's own (``api.audit``:
tokens, settings, nodes, overrides), one at a time (``?log=``): each log keeps its own ids, so each pages on
its own."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.responses import Response

from api import audit
from api.console.web import page_of
from api.operation import Call
from api.services import services
from ledger import auditlog

PAGE_ROWS = 50
LOGS = {"ledger": auditlog.page, "api": audit.page}


def log(call: Call) -> Response:
    page, svc, p = page_of(call), services(call), call.params
    which = p.get("log", "ledger")
    filters = {k: p[k] for k in ("actor", "action", "target") if p.get(k)}
    with svc.read() as conn:
        rows = LOGS[which](conn, **filters, before_id=p.get("before"), limit=PAGE_ROWS + 1)
    more = len(rows) > PAGE_ROWS
    rows = rows[:PAGE_ROWS]
    query = urlencode({"log": which, **filters})
    return page.render("audit/log.html", rows=rows, filters=filters, log=which, logs=tuple(LOGS),
                       next_before=rows[-1].id if more else None, query=query)
