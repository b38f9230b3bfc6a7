"""The audit logs, newest first, filtered by actor, action or target (prefixes), paged by id: the ledger's
(``ledger.auditlog``: users, projects, mappings, money, prices, period closes) or the API's own (``api.audit``:
tokens, settings, nodes, overrides) or the GPU queue's admin actions (``control.queue_action``: boost, cancel,
extend, approve, each with its reason), one at a time (``?log=``): each log keeps its own ids, so each pages on
its own."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlencode

from starlette.responses import Response

from api import audit
from api.console.web import page_of
from api.operation import Call
from api.services import services
from control.queue import admin as queue_admin
from ledger import auditlog

PAGE_ROWS = 50
# Each log's rows: an id, when, who, what, which target, before and after (the queue's also carry a reason).
LOGS: dict[str, Callable[..., Sequence[Any]]] = {"ledger": auditlog.page, "api": audit.page,
                                                 "queue": queue_admin.action_page}


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
