"""Money admin pages: a wallet (balance, its last entries, the recharge, grant and adjust forms) and one
journal entry (its postings, the refund and reverse forms). Each form carries an idempotency key made when it
was rendered and runs the API's own operation (api.console.pages.operate), so a double submit posts once;
after a post the browser is sent (303) to the page that shows what was posted."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from starlette.responses import Response

from api.console.pages import operate
from api.console.web import page_of, see_other
from api.handlers.settings import thresholds_in_force
from api.operation import Call
from api.services import services

# The wallet page lists the newest WALLET_LINES entries of this many days (the rest: the statement or an export):
# a busy wallet has ten thousand charges a month.
ENTRY_DAYS = 31
WALLET_LINES = 100


def wallet(call: Call) -> Response:
    page, svc, code = page_of(call), services(call), call.params["wallet"]
    held = svc.ledger.balance(code, thresholds_in_force(call))
    end = datetime.now(svc.ledger.config.timezone).date() + timedelta(days=1)
    # The last page of the period's statement (before=0: the end), read as one page, not the whole month.
    newest = svc.ledger.statement_page(code, end - timedelta(days=ENTRY_DAYS), end, limit=WALLET_LINES, before=0)
    return page.render("money/wallet.html", wallet=code, balance=held, statement=newest,
                       lines=tuple(reversed(newest.lines)), key=operate.new_key(),
                       posted=call.params.get("posted"))


def _posted_to_wallet(call: Call, result: Any) -> Response:
    return see_other(f"/admin/wallets/{call.params['wallet']}?posted={result['entry']['id']}")


def recharge(call: Call) -> Response:
    body = operate.fields(call.body, "amount", "memo", "channel")
    return _posted_to_wallet(call, operate.run(call, "recharge", body))


def grant(call: Call) -> Response:
    """The form's expiry is a local day (a date field): the grant expires as that day begins."""
    body: dict[str, Any] = operate.fields(call.body, "amount", "memo")
    expires = operate.local_time(call, "expires_on")
    if expires is not None:
        body["expires_at"] = expires
    return _posted_to_wallet(call, operate.run(call, "grant", body))


def adjust(call: Call) -> Response:
    body: dict[str, Any] = operate.fields(call.body, "amount", "reason")
    body["writeoff"] = call.body.get("writeoff") == "on"
    return _posted_to_wallet(call, operate.run(call, "adjust", body))


def entry(call: Call) -> Response:
    page, svc = page_of(call), services(call)
    found = svc.ledger.entry(call.params["entry_id"])
    # The wallets it moved (liabilities:wallet:OWNER:NAME[:grant:N]), as the wallet page names them.
    wallets = sorted({":".join(p.account.split(":")[2:4]) for p in found.postings
                      if p.account.startswith("liabilities:wallet:")})
    return page.render("money/entry.html", entry=found, wallets=wallets, key=operate.new_key())


def _posted_entry(result: Any) -> Response:
    return see_other(f"/admin/entries/{result['entry']['id']}")


def refund(call: Call) -> Response:
    return _posted_entry(operate.run(call, "refund", operate.fields(call.body, "amount", "reason")))


def reverse(call: Call) -> Response:
    return _posted_entry(operate.run(call, "reverse", operate.fields(call.body, "reason")))
