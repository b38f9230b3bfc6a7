"""A billing user's pages (their own only, by the route table's ``Own("name")``; admins and auditors may
open anyone's): home, usage, statement, projects."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, timedelta

from starlette.responses import Response

from api.console import usage as usage_read
from api.console.render import SECURITY_HEADERS
from api.console.web import page_of
from api.errors import unprocessable
from api.handlers.money import idle_held
from api.handlers.settings import thresholds_in_force
from api.operation import Call
from api.services import period, services
from ledger import reports
from ledger.money import format_amount

USAGE_DAYS = (7, 30, 90)


def _today(call: Call) -> date:
    return datetime.now(services(call).ledger.config.timezone).date()


def home(call: Call) -> Response:
    page, svc, name = page_of(call), services(call), call.params["name"]
    ledger = svc.ledger
    user = ledger.get_user(name)
    thresholds = thresholds_in_force(call)
    standing = ledger.standing(name, thresholds)
    with svc.read() as conn:
        burn = reports.burn_per_hour(conn, [name], datetime.now(UTC)).get(name, 0)
    # Time to empty: what is left above the blocked tier at the last hour's rate (none when nothing burns).
    headroom = standing.available - thresholds.blocked + (standing.credit_limit or 0)
    hours = None if burn <= 0 or headroom <= 0 else headroom // burn
    return page.render("user/home.html", user=user, standing=standing, thresholds=thresholds, burn=burn,
                       hours_left=hours, empty=headroom <= 0)


def csv_response(rows: list[list[str]], filename: str) -> Response:
    """``rows`` as a CSV download (the console's CSV pages: usage, statement, idle-held GPU-hours)."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={**SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="{filename}"'})


def usage(call: Call) -> Response:
    page, svc, name = page_of(call), services(call), call.params["name"]
    days = call.params.get("days", 30)
    if days not in USAGE_DAYS:
        raise unprocessable("invalid_parameter", f"days must be one of {USAGE_DAYS}", name="days")
    end = _today(call) + timedelta(days=1)
    start = end - timedelta(days=days)
    with svc.read() as conn:
        data = usage_read.daily(conn, name, start, end, svc.ledger.config.timezone)
    if call.params.get("format") == "csv":
        rows = [["day", "key", "unit", "quantity", "amount"]]
        rows += [[d.isoformat(), s.key, s.unit, str(s.quantities[i]), format_amount(s.amounts[i])]
                 for s in data.series for i, d in enumerate(data.days) if s.amounts[i] or s.quantities[i]]
        return csv_response(rows, f"usage-{name}-{start}-{end}.csv")
    # The chart's data, exact: micro-unit integers (the page's script divides only to draw).
    chart = {"days": [d.isoformat() for d in data.days], "series": [
        {"key": s.key, "unit": s.unit, "amounts": list(s.amounts)} for s in data.series],
        "start": start.isoformat(), "end": end.isoformat(), "total": data.total,
        "currency": svc.ledger.config.currency}
    return page.render("user/usage.html", name=name, days=days, choices=USAGE_DAYS, data=data, start=start,
                       end=end, chart_json=json.dumps(chart))


# A busy month has ten thousand charges: the page shows them this many at a time (each line with its running
# balance, opening and closing on every page); the CSV has them all.
STATEMENT_LINES = 200


def statement(call: Call) -> Response:
    page, svc, name = page_of(call), services(call), call.params["name"]
    if call.params.get("from") is None and call.params.get("to") is None:
        end = _today(call) + timedelta(days=1)
        start = end.replace(day=1) if end.day > 1 else (end - timedelta(days=1)).replace(day=1)
    else:
        start, end = period(call, svc.config.max_report_days)  # type: ignore[assignment]
    # Their own wallet, as the API's statement rule (Own without ``charged``): a project's wallet lists its
    # other members' charges, which are not theirs to read.
    project = svc.ledger.get_user(name).project
    wallet = f"user:{name}"
    if call.params.get("format") == "csv":
        st = svc.ledger.statement(wallet, start, end)
        rows = [["entry_id", "effective_at", "kind", "memo", "amount", "running"],
                ["", st.start.isoformat(), "opening", "", "", format_amount(st.opening)]]
        rows += [[str(line.entry_id), line.effective_at.isoformat(), line.kind, line.memo, format_amount(line.amount),
                  format_amount(line.running)] for line in st.lines]
        rows.append(["", st.end.isoformat(), "closing", "", "", format_amount(st.closing)])
        # GPU-hours, not money: in the memo column, so the amount and running columns stay the statement's sums.
        rows.append(["", "", "idle_held_gpu_hours", str(idle_held(svc, name, since=st.start, until=st.end)), "", ""])
        return csv_response(rows, f"statement-{name}-{start}-{end}.csv")
    # Keyset paging by entry: the page reads STATEMENT_LINES lines, the running balances summed in the database.
    shown = svc.ledger.statement_page(wallet, start, end, limit=STATEMENT_LINES, after=call.params.get("after"),
                                      before=call.params.get("before"))
    return page.render("user/statement.html", name=name, statement=shown, start=start, end=end, project=project,
                       last_day=end - timedelta(days=1), lines=shown.lines,
                       idle_held=idle_held(svc, name, since=shown.start, until=shown.end))


def projects(call: Call) -> Response:
    page, svc, name = page_of(call), services(call), call.params["name"]
    user = svc.ledger.get_user(name)
    project = None
    if user.project is not None:
        project = (user.project, svc.ledger.balance(f"project:{user.project}", thresholds_in_force(call)))
    return page.render("user/projects.html", name=name, user=user, project=project)
