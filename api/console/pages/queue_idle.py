"""The weekly idle-held GPU-hours report (docs/queue.md, "Idle-held GPUs"): per user, the GPU-hours their grants
were held idle in one week (Monday to Monday in the lab's time zone), as GET /v1/reports/idle-gpu-hours answers
it (``store.idle_hours``, two decimals); a week picker, the weeks before and after, and the same rows as CSV."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

from starlette.responses import Response

from api.console.pages.nodes import as_call
from api.console.pages.user import csv_response
from api.console.web import page_of
from api.handlers import queue
from api.operation import Call


def report(call: Call) -> Response:
    page = page_of(call)
    week: date | None = call.params.get("week")
    found = queue.idle_report(as_call(call, {} if week is None else {"week": week}))
    zone = page.formats.tz
    start, end = (datetime.fromisoformat(found[k]).astimezone(zone) for k in ("start", "end"))
    rows = [(u["user"], Decimal(u["idle_gpu_hours"])) for u in found["users"]]
    if call.params.get("format") == "csv":
        lines = [["week_start", "week_end", "user", "idle_gpu_hours"]]
        lines += [[start.isoformat(), end.isoformat(), user, str(hours)] for user, hours in rows]
        return csv_response(lines, f"idle-gpu-hours-{start.date()}.csv")
    first, following = start.date(), end.date()
    return page.render("queue/idle.html", rows=rows, first=first, last=following - timedelta(days=1),
                       before=(first - timedelta(days=7)).isoformat(),
                       after=following.isoformat() if following <= datetime.now(zone).date() else None,
                       total=sum((h for _, h in rows), Decimal(0)))
