"""The price book: every price version, a form for a new one (effective from a time), and a what-if preview
over a past period (what was charged per model against what the proposed price would have charged). Both
forms run their API operations (POST /v1/prices, POST /v1/prices/preview)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from starlette.responses import Response

from api.console.pages import operate
from api.console.web import page_of, see_other
from api.errors import unprocessable
from api.operation import Call
from api.services import services
from ledger.money import parse_amount
from ledger.records import UNITS

_PRICE_FIELDS = ("resource", "amount", "per", "model_pattern", "match")


def _signed(text: str) -> int:
    return -parse_amount(text[1:]) if text.startswith("-") else parse_amount(text)


def book(call: Call, preview: dict[str, Any] | None = None) -> Response:
    page, svc = page_of(call), services(call)
    today = datetime.now(svc.ledger.config.timezone).date()
    return page.render("prices/book.html", prices=sorted(svc.ledger.list_prices(), key=lambda p: p.id, reverse=True),
                       preview=preview, resources=tuple(UNITS),
                       default_from=(today - timedelta(days=30)).isoformat(),
                       default_to=today.isoformat())


def add(call: Call) -> Response:
    body: dict[str, Any] = operate.fields(call.body, *_PRICE_FIELDS, "memo")
    valid_from = operate.local_time(call, "valid_from")
    if valid_from is not None:
        body["valid_from"] = valid_from
    if "priority" in call.body and call.body["priority"].strip():
        try:
            body["priority"] = int(call.body["priority"])
        except ValueError as exc:
            raise unprocessable("validation_error", "priority: not an integer", field="priority") from exc
    operate.run(call, "add_price", body)
    return see_other("/admin/prices")


def preview(call: Call) -> Response:
    """A read, not a change: the result is shown on the price book's page itself (nothing to redirect to)."""
    form = call.body
    try:
        start, end = date.fromisoformat(form.get("from", "")), date.fromisoformat(form.get("to", ""))
    except ValueError as exc:
        raise unprocessable("invalid_range", "from and to must be dates (YYYY-MM-DD)") from exc
    result = operate.run(call, "preview_price", operate.fields(form, *_PRICE_FIELDS),
                         params={"from": start, "to": end})
    rows = [(r["model"], Decimal(r["quantity"]), parse_amount(r["charged"]), parse_amount(r["would_charge"]),
             _signed(r["difference"])) for r in result["rows"]]
    return book(call, {"rows": rows, "start": start, "end": end, "form": form})
