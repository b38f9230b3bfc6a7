"""Ledger records as JSON: money as exact decimal text in the currency (``format_amount``, six decimals),
never a float, with the currency beside the totals a person reads (balances, statements); every point in time
in UTC, RFC 3339 (``when``), whatever zone the database session or the server runs in (docs/api.md, "Time")."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from api.tokens import TokenInfo
from ledger.instants import instant
from ledger.money import format_amount
from ledger.records import (
    Balance,
    Entry,
    NodeUserMapping,
    PriceVersion,
    Project,
    Statement,
    TrialBalance,
    User,
)


def money(micro: int | None) -> str | None:
    return None if micro is None else format_amount(micro)


def when(t: datetime | None) -> str | None:
    """A point in time as the API prints it (``ledger.instants.instant``: UTC with its offset), None as null."""
    return None if t is None else instant(t)


def user(u: User) -> dict[str, Any]:
    return {"name": u.name, "display_name": u.display_name, "wallet": u.wallet, "project": u.project,
            "exempt": u.exempt, "credit_limit": money(u.credit_limit), "created_at": when(u.created_at)}


def project(p: Project) -> dict[str, Any]:
    return {"name": p.name, "display_name": p.display_name, "wallet": p.wallet, "created_at": when(p.created_at)}


def mapping(m: NodeUserMapping) -> dict[str, Any]:
    return {"node": m.node, "linux_user": m.linux_user, "user": m.user}


def balance(b: Balance, currency: str, own_available: int | None = None) -> dict[str, Any]:
    return {"wallet": b.wallet, "currency": currency, "available": money(b.available), "tier": b.tier.value,
            "exempt": b.exempt, "credit_limit": money(b.credit_limit), "own_available": money(own_available)}


def entry(e: Entry) -> dict[str, Any]:
    return {"id": e.id, "kind": e.kind, "idem_key": e.idem_key, "payload_sha256": e.payload_sha256,
            "effective_at": when(e.effective_at), "recorded_at": when(e.recorded_at), "actor": e.actor,
            "memo": e.memo, "ref_entry_id": e.ref_entry_id, "usage_id": e.usage_id,
            "postings": [{"account": p.account, "amount": money(p.amount)} for p in e.postings]}


def price(p: PriceVersion) -> dict[str, Any]:
    return {"id": p.id, "resource": p.resource, "model_pattern": p.model_pattern, "match": p.match,
            "priority": p.priority, "amount": str(p.amount), "per": str(p.per), "unit": p.unit,
            "valid_from": when(p.valid_from), "actor": p.actor, "memo": p.memo}


def statement(s: Statement, currency: str, idle_held: Decimal | None) -> dict[str, Any]:
    """``idle_held``: the user's idle-held GPU-hours in the period (two decimals, as text), None for a project."""
    return {"wallet": s.wallet, "currency": currency, "start": when(s.start), "end": when(s.end),
            "opening": money(s.opening), "closing": money(s.closing),
            "idle_held_gpu_hours": None if idle_held is None else str(idle_held),
            "lines": [{"entry_id": line.entry_id, "effective_at": when(line.effective_at), "kind": line.kind,
                       "memo": line.memo, "amount": money(line.amount), "running": money(line.running)}
                      for line in s.lines]}


def trial_balance(tb: TrialBalance) -> dict[str, Any]:
    return {"rows": [{"account": r.account, "kind": r.kind, "balance": money(r.balance)} for r in tb.rows],
            "total": money(tb.total)}


def token(t: TokenInfo) -> dict[str, Any]:
    return {"id": t.id, "prefix": t.prefix, "name": t.name, "role": t.role, "user": t.billing_user,
            "created_at": when(t.created_at), "created_by": t.created_by, "expires_at": when(t.expires_at),
            "revoked_at": when(t.revoked_at)}
