"""Read-side: usage rows, journal entries, reports, prices and the what-if preview of a price change."""

from __future__ import annotations

from datetime import UTC, datetime, time
from decimal import Decimal
from fnmatch import fnmatchcase
from fractions import Fraction
from typing import Any

from api import render
from api.errors import unprocessable
from api.operation import Call
from api.services import aware, period, services
from ledger import browse
from ledger.money import format_amount
from ledger.rating import round_micro


def _page(call: Call) -> tuple[int, int]:
    return call.params.get("cursor", 0), call.params.get("limit", 100)


def usage(call: Call) -> Any:
    svc = services(call)
    start, end = period(call, svc.config.max_report_days, required=False)
    tz = svc.ledger.config.timezone
    filters = {k: call.params.get(k) for k in ("user", "node", "model", "resource")}
    filters["start"] = datetime.combine(start, time(), tzinfo=tz) if start else None
    filters["end"] = datetime.combine(end, time(), tzinfo=tz) if end else None
    after, limit = _page(call)
    # Evidence can hold other people's command lines: only admins and auditors see it.
    role = call.principal.role if call.principal else None
    with svc.read() as conn:
        items, cursor = browse.usage_page(conn, filters, after, limit, with_evidence=role in ("admin", "auditor"))
    return {"items": items, "next_cursor": cursor}


def entries(call: Call) -> Any:
    svc = services(call)
    start, end = period(call, svc.config.max_report_days, required=False)
    tz = svc.ledger.config.timezone
    after, limit = _page(call)
    with svc.read() as conn:
        items, cursor = browse.entries_page(
            conn, call.params.get("kind"), datetime.combine(start, time(), tzinfo=tz) if start else None,
            datetime.combine(end, time(), tzinfo=tz) if end else None, after, limit)
    return {"items": items, "next_cursor": cursor}


def entry(call: Call) -> Any:
    return render.entry(services(call).ledger.entry(call.params["entry_id"]))


def trial_balance(call: Call) -> Any:
    return render.trial_balance(services(call).ledger.trial_balance(call.params.get("at")))


def usage_report(call: Call) -> Any:
    svc = services(call)
    start, end = period(call, svc.config.max_report_days)
    assert start is not None and end is not None
    rows = svc.ledger.usage_report(start, end, by=call.params.get("by", "user"))
    return [{"key": r.key, "unit": r.unit, "quantity": str(r.quantity), "amount": format_amount(r.amount)}
            for r in rows]


def revenue(call: Call) -> Any:
    svc = services(call)
    start, end = period(call, svc.config.max_report_days)
    assert start is not None and end is not None
    return [{"account": r.account, "amount": format_amount(r.amount)} for r in svc.ledger.revenue(start, end)]


def list_prices(call: Call) -> Any:
    return [render.price(p) for p in services(call).ledger.list_prices()]


def add_price(call: Call) -> Any:
    b = call.body
    valid_from = aware(b["valid_from"], "valid_from") if b.get("valid_from") is not None else datetime.now(UTC)
    return render.price(services(call).ledger.add_price(
        b["resource"], Decimal(b["amount"]), Decimal(b["per"]), model_pattern=b.get("model_pattern", ""),
        match=b.get("match", "exact"), priority=b.get("priority", 0), valid_from=valid_from, actor=call.actor,
        memo=b.get("memo", ""), request_id=call.request_id))


def preview_price(call: Call) -> Any:
    """What the usage of a past period would have cost under a proposed price, per model, next to what was
    charged. An estimate: the proposed price is applied to every matching row's total quantity, rounded
    half-up once per model (the ledger rounds per epoch, so real charges may differ by micro-units)."""
    svc, b = services(call), call.body
    start, end = period(call, svc.config.max_report_days)
    assert start is not None and end is not None
    pattern, glob = b.get("model_pattern", ""), b.get("match", "exact") == "glob"
    if Decimal(b["per"]) <= 0:
        raise unprocessable("invalid_price", "per must be > 0")
    price = Fraction(Decimal(b["amount"])) / Fraction(Decimal(b["per"]))
    rows = []
    for r in svc.ledger.usage_report(start, end, by="model", resource=b["resource"]):
        if not (fnmatchcase(r.key, pattern) if glob else r.key == pattern or not pattern):
            continue
        would = round_micro(Fraction(r.quantity) * price)
        rows.append({"model": r.key, "quantity": str(r.quantity), "charged": format_amount(r.amount),
                     "would_charge": format_amount(would), "difference": format_amount(would - r.amount)})
    return {"rows": rows}
