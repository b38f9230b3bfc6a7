"""Money-moving operations (each keyed by the request's Idempotency-Key), balances and statements.

The ledger does the idempotency: the key (namespaced ``api:``) with the same content returns the original
entry and writes nothing; with other content it is an IdempotencyConflict (409). So a replay answers the
same body as the first call."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from api import render
from api.errors import forbidden
from api.handlers.settings import thresholds_in_force
from api.operation import Call
from api.services import Services, aware, period, services
from control.queue import admin
from ledger.accounts import wallet_code
from ledger.directory import wallet_ref
from ledger.money import parse_amount
from ledger.records import PostResult


def _key(call: Call) -> str:
    assert call.idempotency_key is not None
    return f"api:{call.idempotency_key}"


def _posted(result: PostResult) -> Any:
    return {"entry": render.entry(result.entry)}


def recharge(call: Call) -> Any:
    b = call.body
    return _posted(services(call).ledger.recharge(
        call.params["wallet"], parse_amount(b["amount"]), idem_key=_key(call), actor=call.actor,
        memo=b.get("memo", ""), channel=b.get("channel", "bank"), request_id=call.request_id))


def grant(call: Call) -> Any:
    b = call.body
    expires = aware(b["expires_at"], "expires_at") if b.get("expires_at") is not None else None
    return _posted(services(call).ledger.grant(
        call.params["wallet"], parse_amount(b["amount"]), expires_at=expires, idem_key=_key(call),
        actor=call.actor, memo=b.get("memo", ""), request_id=call.request_id))


def adjust(call: Call) -> Any:
    b = call.body
    text = b["amount"]
    micro = -parse_amount(text[1:]) if text.startswith("-") else parse_amount(text)
    return _posted(services(call).ledger.adjust(
        call.params["wallet"], micro, idem_key=_key(call), actor=call.actor, reason=b["reason"],
        counter="writeoff" if b.get("writeoff") else "adjustment", request_id=call.request_id))


def refund(call: Call) -> Any:
    b = call.body
    return _posted(services(call).ledger.refund(
        call.params["entry_id"], parse_amount(b["amount"]), idem_key=_key(call), actor=call.actor,
        reason=b["reason"], request_id=call.request_id))


def reverse(call: Call) -> Any:
    return _posted(services(call).ledger.reverse(
        call.params["entry_id"], idem_key=_key(call), actor=call.actor, reason=call.body["reason"],
        request_id=call.request_id))


def balance(call: Call) -> Any:
    """For a user, their standing: the wallet their usage is charged to (their project's, if any), what it
    holds and the tier the controller enforces on them; for a project, its wallet. Tiers are by the
    thresholds the controller enforces (a settings version's)."""
    ledger, p = services(call).ledger, call.principal
    owner, name = wallet_ref(call.params["wallet"])
    if owner == "project" and p is not None and p.role == "user":
        # A member reads the balance and tier of the wallet they spend from (not its other members' usage).
        assert p.billing_user is not None
        if ledger.get_user(p.billing_user).project != name:
            raise forbidden()
    thresholds = thresholds_in_force(call)   # the ledger computes the tier, by the rule the controller enforces
    held = ledger.standing(name, thresholds) if owner == "user" else ledger.balance(call.params["wallet"], thresholds)
    own = ledger.balance(f"user:{name}") if owner == "user" and held.wallet != wallet_code("user", name) else None
    return render.balance(held, ledger.config.currency, None if own is None else own.available)


def statement(call: Call) -> Any:
    """A wallet's statement; a user's also says the GPU-hours their grants were held idle in its period
    (``idle_held``), a project's null (its members' grants are theirs, not the wallet's)."""
    svc = services(call)
    start, end = period(call, svc.config.max_report_days)
    assert start is not None and end is not None
    st = svc.ledger.statement(call.params["wallet"], start, end)
    owner, name = wallet_ref(call.params["wallet"])
    idle = idle_held(svc, name, since=st.start, until=st.end) if owner == "user" else None
    return render.statement(st, svc.ledger.config.currency, idle)


def idle_held(svc: Services, user: str, *, since: datetime, until: datetime) -> Decimal:
    """``user``'s idle-held GPU-hours over a statement's period, counted until now while it runs
    (``control.queue.admin.idle_held``: the weekly report's figure, two decimals), in one query."""
    with svc.read() as conn:
        return admin.idle_held(conn, user, since=since, until=until, now=datetime.now(UTC))
