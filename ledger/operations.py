"""Admin money operations as journal drafts: recharge, grant, grant expiry, adjustment, refund, reversal.

Each function runs inside ``ledger.db.writing`` and posts through ``journal.post`` (idempotent per key).
Checks that the database would also refuse (a grant spent below zero) are made here first, so the
caller gets an error that carries the numbers instead of a constraint name.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.engine import Connection

from ledger import journal
from ledger.accounts import COUNTERS, GRANTS, ensure_account, funding_code, grant_code
from ledger.errors import (
    AlreadyReversed,
    InsufficientFunds,
    LedgerError,
    MalformedAmount,
    NonPositiveAmount,
    NotRefundable,
    RefundExceedsCharge,
)
from ledger.money import Side, signed
from ledger.records import Entry, PostingLine, PostResult


def _positive(micro: int) -> int:
    if micro <= 0:
        raise NonPositiveAmount(micro)
    return micro


def _pair(debit: str, credit: str, micro: int) -> tuple[PostingLine, PostingLine]:
    return PostingLine(debit, signed(Side.DEBIT, micro)), PostingLine(credit, signed(Side.CREDIT, micro))


def posting_sum(conn: Connection, code: str) -> int:
    """Sum of an account's postings (debits - credits), from the balance cache ``audit verify`` checks."""
    value = conn.execute(
        text("SELECT coalesce(b.debits - b.credits, 0) FROM ledger.account a"
             " LEFT JOIN ledger.account_balance b ON b.account_id = a.id WHERE a.code = :c"),
        {"c": code},
    ).scalar()
    return int(value or 0)


def _check_no_overdraft(conn: Connection, postings: tuple[PostingLine, ...]) -> None:
    flagged = {
        code for (code,) in conn.execute(
            text("SELECT code FROM ledger.account WHERE debits_must_not_exceed_credits AND code = ANY(:codes)"),
            {"codes": [p.account for p in postings]},
        )
    }
    for code in flagged:
        held = -posting_sum(conn, code)
        asked = sum(p.amount for p in postings if p.account == code)
        if asked > held:
            raise InsufficientFunds(code, held, asked)


def _now() -> datetime:
    return datetime.now(UTC)


def recharge(conn: Connection, wallet: str, micro: int, *, channel: str, currency: str, idem_key: str, actor: str,
             memo: str, request_id: str | None) -> PostResult:
    funding = funding_code(channel)
    ensure_account(conn, funding, currency)
    draft = journal.Draft("recharge", idem_key, _now(), _pair(funding, wallet, _positive(micro)), actor, memo,
                          request_id=request_id)
    return journal.post(conn, draft)


def grant(conn: Connection, wallet: str, micro: int, *, expires_at: datetime | None, currency: str, idem_key: str,
          actor: str, memo: str, request_id: str | None) -> PostResult:
    """Money given, not paid: it sits in its own sub-account (never below zero) that usage spends first,
    and what is left of it goes back at ``expires_at`` (``expire_grants``)."""
    _positive(micro)
    if expires_at is not None and expires_at.tzinfo is None:
        raise LedgerError("expires_at must carry a time zone", expires_at=expires_at.isoformat())
    wallet_id = ensure_account(conn, wallet, currency)
    existing = conn.execute(
        text("SELECT a.code FROM ledger.journal_entry e JOIN ledger.grant_account g ON g.entry_id = e.id"
             " JOIN ledger.account a ON a.id = g.account_id WHERE e.idem_key = :k"),
        {"k": idem_key},
    ).scalar()
    if existing is None:
        count = conn.execute(text("SELECT count(*) FROM ledger.grant_account WHERE wallet_account_id = :w"),
                             {"w": wallet_id}).scalar_one()
        code = grant_code(wallet, int(count) + 1)
    else:
        code = str(existing)
    ensure_account(conn, GRANTS, currency)
    account_id = ensure_account(conn, code, currency, no_overdraft=True)
    draft = journal.Draft("grant", idem_key, _now(), _pair(GRANTS, code, micro), actor, memo, request_id=request_id,
                          facts={"expires_at": expires_at})
    result = journal.post(conn, draft)
    if result.created:
        conn.execute(
            text("INSERT INTO ledger.grant_account (entry_id, account_id, wallet_account_id, expires_at)"
                 " VALUES (:e, :a, :w, :x)"),
            {"e": result.entry.id, "a": account_id, "w": wallet_id, "x": expires_at},
        )
    return result


def expire_grants(conn: Connection, now: datetime, *, actor: str, request_id: str | None) -> list[PostResult]:
    """Give back what is left of every grant expired by ``now`` (a balancing transfer: at most what is left)."""
    rows = conn.execute(
        text("SELECT g.entry_id, a.code, coalesce(b.credits - b.debits, 0) AS remaining"
             "  FROM ledger.grant_account g JOIN ledger.account a ON a.id = g.account_id"
             "  LEFT JOIN ledger.account_balance b ON b.account_id = g.account_id"
             " WHERE g.expires_at <= :now AND NOT EXISTS (SELECT 1 FROM ledger.journal_entry x"
             "       WHERE x.kind = 'grant_expiry' AND x.ref_entry_id = g.entry_id)"
             " ORDER BY g.expires_at, g.entry_id"),
        {"now": now},
    ).all()
    results = []
    for entry_id, code, remaining in rows:
        if remaining <= 0:
            continue
        draft = journal.Draft("grant_expiry", f"grant-expiry:{entry_id}", now, _pair(code, GRANTS, int(remaining)),
                              actor, f"expiry of grant {entry_id}", ref_entry_id=int(entry_id),
                              request_id=request_id)
        results.append(journal.post(conn, draft))
    return results


def adjust(conn: Connection, wallet: str, micro: int, *, counter: str, currency: str, idem_key: str, actor: str,
           reason: str, request_id: str | None) -> PostResult:
    """``micro`` > 0 credits the wallet (the lab gives), < 0 debits it (the user owes more)."""
    if counter not in COUNTERS:
        raise LedgerError(f"adjustment counter must be one of {sorted(COUNTERS)}", counter=counter)
    if micro == 0:
        raise MalformedAmount("0", "an adjustment must not be zero")
    other = COUNTERS[counter]
    ensure_account(conn, other, currency)
    postings = _pair(other, wallet, micro) if micro > 0 else _pair(wallet, other, -micro)
    return journal.post(conn, journal.Draft("adjustment", idem_key, _now(), postings, actor, reason,
                                            request_id=request_id, facts={"counter": counter}))


def _refunded(conn: Connection, entry_id: int) -> int:
    value = conn.execute(
        text("SELECT coalesce(sum(p.amount), 0) FROM ledger.journal_entry r JOIN ledger.posting p ON p.entry_id = r.id"
             " WHERE r.kind = 'refund' AND r.ref_entry_id = :e AND p.amount > 0"),
        {"e": entry_id},
    ).scalar_one()
    return int(value)


def refund(conn: Connection, entry: Entry, micro: int, *, idem_key: str, actor: str, reason: str,
           request_id: str | None) -> PostResult:
    """Give back part or all of a usage charge: debit its revenue account, credit the wallet it was charged to
    (a charge paid from a grant is refunded to the wallet itself)."""
    _positive(micro)
    if entry.kind != "usage":
        raise NotRefundable(entry.id, entry.kind)
    wallet = conn.execute(
        text("SELECT a.code FROM ledger.usage u JOIN ledger.account a ON a.id = u.account_id WHERE u.id = :u"),
        {"u": entry.usage_id},
    ).scalar_one()
    revenue = next(p for p in entry.postings if p.amount < 0)
    draft = journal.Draft("refund", idem_key, _now(), _pair(revenue.account, wallet, micro), actor, reason,
                          ref_entry_id=entry.id, request_id=request_id)
    already = conn.execute(text("SELECT id, payload_sha256 FROM ledger.journal_entry WHERE idem_key = :k"),
                           {"k": idem_key}).first()
    if already is None:
        reversed_by = _reversal_of(conn, entry.id)
        refundable = 0 if reversed_by is not None else -revenue.amount - _refunded(conn, entry.id)
        if micro > refundable:
            raise RefundExceedsCharge(entry.id, refundable, micro)
    return journal.post(conn, draft)


def _reversal_of(conn: Connection, entry_id: int) -> int | None:
    value = conn.execute(
        text("SELECT id FROM ledger.journal_entry WHERE kind = 'reversal' AND ref_entry_id = :e"), {"e": entry_id}
    ).scalar()
    return None if value is None else int(value)


def reverse(conn: Connection, entry: Entry, *, idem_key: str, actor: str, reason: str,
            request_id: str | None) -> PostResult:
    """A full reversal: the same postings negated, at most once per entry."""
    postings = tuple(PostingLine(p.account, -p.amount) for p in entry.postings)
    draft = journal.Draft("reversal", idem_key, _now(), postings, actor, reason, ref_entry_id=entry.id,
                          request_id=request_id)
    already = conn.execute(text("SELECT 1 FROM ledger.journal_entry WHERE idem_key = :k"), {"k": idem_key}).first()
    if already is None:
        by = _reversal_of(conn, entry.id)
        if by is not None:
            raise AlreadyReversed(entry.id, by)
        if entry.kind == "usage" and _refunded(conn, entry.id):
            raise LedgerError(f"entry {entry.id} has refunds: reverse those first", entry_id=entry.id)
        _check_no_overdraft(conn, postings)
    return journal.post(conn, draft)
