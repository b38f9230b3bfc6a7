"""Reports over the ledger: wallet sums, statements, trial balance, usage and revenue for a period.

Periods are local dates in the configured time zone (``[start, end)``), turned into UTC instants once,
here, so monthly totals do not shift by the zone's offset.
"""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.engine import Connection

from ledger.errors import LedgerError
from ledger.money import available
from ledger.records import RevenueRow, Statement, StatementLine, TrialBalance, TrialBalanceRow, UsageRow

_WALLET_ACCOUNTS = "(SELECT id FROM ledger.account WHERE code = :w OR code LIKE :w || ':grant:%')"


def wallet_accounts(conn: Connection, wallet: str) -> list[int]:
    """Ids of a wallet and its grant sub-accounts (looked up first: given as a subquery, the planner may
    scan every posting instead of using the posting_account index)."""
    return [int(i) for i in conn.execute(text(f"SELECT id FROM ledger.account WHERE id IN {_WALLET_ACCOUNTS}"),  # noqa: S608
                                         {"w": wallet}).scalars()]
USAGE_KEYS = {"user": "bu.name", "node": "u.node", "model": "u.model", "resource": "u.resource"}


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    """The instant a local calendar day starts."""
    return datetime.combine(day, time(), tzinfo=tz)


def wallet_sum(conn: Connection, wallet: str) -> int:
    """Posting sum of a wallet and its grant sub-accounts, from the balance cache."""
    value = conn.execute(
        text(f"SELECT coalesce(sum(debits - credits), 0) FROM ledger.account_balance WHERE account_id IN {_WALLET_ACCOUNTS}"),  # noqa: S608, E501
        {"w": wallet},
    ).scalar_one()
    return int(value)


def statement(conn: Connection, wallet: str, start: date, end: date, tz: ZoneInfo) -> Statement:
    lo, hi = local_midnight(start, tz), local_midnight(end, tz)
    ids = wallet_accounts(conn, wallet)
    opening = available(int(conn.execute(
        text("SELECT coalesce(sum(amount), 0) FROM ledger.posting WHERE account_id = ANY(:ids) AND effective_at < :lo"),
        {"ids": ids, "lo": lo},
    ).scalar_one()))
    rows = conn.execute(
        text("SELECT e.id, e.effective_at, e.kind, e.memo, m.total FROM ("
             "  SELECT entry_id, sum(amount) AS total FROM ledger.posting WHERE account_id = ANY(:ids)"
             "   AND effective_at >= :lo AND effective_at < :hi GROUP BY entry_id) m"
             " JOIN ledger.journal_entry e ON e.id = m.entry_id WHERE m.total <> 0 ORDER BY e.effective_at, e.id"),
        {"ids": ids, "lo": lo, "hi": hi},
    )
    running = opening
    lines = []
    for entry_id, effective_at, kind, memo, total in rows:
        amount = available(int(total))
        running += amount
        lines.append(StatementLine(int(entry_id), effective_at, kind, memo, amount, running))
    return Statement(wallet, lo, hi, opening, tuple(lines), running)


def trial_balance(conn: Connection, at: date | None, tz: ZoneInfo) -> TrialBalance:
    """Every account's posting sum (now, from the balance cache; or at the start of local day ``at``)."""
    if at is None:
        rows = conn.execute(text(
            "SELECT a.code, a.kind, coalesce(b.debits - b.credits, 0) FROM ledger.account a"
            " LEFT JOIN ledger.account_balance b ON b.account_id = a.id ORDER BY a.code"))
    else:
        rows = conn.execute(text(
            "SELECT a.code, a.kind, coalesce((SELECT sum(p.amount) FROM ledger.posting p"
            "  WHERE p.account_id = a.id AND p.effective_at < :at), 0) FROM ledger.account a ORDER BY a.code"),
            {"at": local_midnight(at, tz)})
    return TrialBalance(tuple(TrialBalanceRow(code, kind, int(balance)) for code, kind, balance in rows))


def usage(conn: Connection, start: date, end: date, by: str, tz: ZoneInfo) -> list[UsageRow]:
    """Quantity and charge per ``by`` (user, node, model or resource) and unit, for intervals ending in the period."""
    if by not in USAGE_KEYS:
        raise LedgerError(f"usage report by must be one of {sorted(USAGE_KEYS)}", by=by)
    key = USAGE_KEYS[by]
    rows = conn.execute(
        text(f"SELECT {key}, u.unit, sum(u.quantity), sum(u.amount) FROM ledger.usage u"  # noqa: S608
             " JOIN ledger.billing_user bu ON bu.id = u.user_id"
             f" WHERE u.interval_end >= :lo AND u.interval_end < :hi GROUP BY {key}, u.unit ORDER BY 1, 2"),
        {"lo": local_midnight(start, tz), "hi": local_midnight(end, tz)},
    )
    return [UsageRow(k, unit, Decimal(q), int(a)) for k, unit, q, a in rows]


def revenue(conn: Connection, start: date, end: date, tz: ZoneInfo) -> list[RevenueRow]:
    """Revenue per revenue account over the period (refunds and reversals included), as a positive amount."""
    rows = conn.execute(
        text("SELECT a.code, -sum(p.amount) FROM ledger.posting p JOIN ledger.account a ON a.id = p.account_id"
             " WHERE a.kind = 'revenue' AND p.effective_at >= :lo AND p.effective_at < :hi"
             " GROUP BY a.code ORDER BY a.code"),
        {"lo": local_midnight(start, tz), "hi": local_midnight(end, tz)},
    )
    return [RevenueRow(code, int(amount)) for code, amount in rows]
