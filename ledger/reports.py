"""Reports over the ledger: wallet sums and figures, statements, trial balance, usage and revenue for a period.

Periods are local dates in the configured time zone (``[start, end)``), turned into UTC instants once,
here, so monthly totals do not shift by the zone's offset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.engine import Connection

from ledger.directory import wallet_ref
from ledger.errors import LedgerError
from ledger.money import available
from ledger.records import (
    Balance,
    RevenueRow,
    Statement,
    StatementLine,
    StatementPage,
    TrialBalance,
    TrialBalanceRow,
    UsageRow,
)
from ledger.tiers import Thresholds, tier_for

# A wallet's accounts: the wallet and its grants' sub-accounts (ledger.grant_account, not a code pattern: ``_`` in
# a name would be a LIKE wildcard, and user a_b's pattern would match user axb's grants).
_WALLET_ACCOUNTS = ("(SELECT w.id FROM ledger.account w WHERE w.code = :w UNION ALL"
                    " SELECT g.account_id FROM ledger.grant_account g"
                    " JOIN ledger.account w ON w.id = g.wallet_account_id WHERE w.code = :w)")


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


# Per billing user: the wallet their usage is charged to (their project's when they are in one), and what it and
# its grants hold (the balance cache; ``= ANY`` of the account ids: an index lookup each).
_STANDINGS = """
SELECT u.name, w.code, u.exempt, u.credit_limit,
       (SELECT coalesce(sum(b.debits - b.credits), 0) FROM ledger.account_balance b
         WHERE b.account_id = ANY (array_append(ARRAY(SELECT g.account_id FROM ledger.grant_account g
                                                       WHERE g.wallet_account_id = w.id), w.id))) AS held
  FROM ledger.billing_user u
  LEFT JOIN ledger.project p ON p.id = u.project_id
  JOIN ledger.account w ON w.id = coalesce(p.wallet_account_id, u.wallet_account_id)
"""


def standings(conn: Connection, users: Sequence[str] | None, thresholds: Thresholds) -> dict[str, Balance]:
    """Per billing user (all when ``users`` is None): the balance of the wallet their usage is charged to and its
    tiers under ``thresholds``, their exemption and credit limit counted (``Balance``), in one query."""
    where, params = ("", {}) if users is None else (" WHERE u.name = ANY(:users)", {"users": list(users)})
    out = {}
    for name, wallet, exempt, credit_limit, held in conn.execute(text(_STANDINGS + where), params):
        money = available(int(held))
        out[name] = Balance(wallet, money, tier_for(money, thresholds, exempt=exempt, credit_limit=credit_limit),
                            tier_for(money, thresholds, credit_limit=credit_limit), exempt, credit_limit)
    return out


@dataclass(frozen=True)
class WalletFigures:
    """A wallet's figures for monitoring, in micro-units: what it holds (``available``, its grants included) and
    the usage money charged to it since it was opened, net of the refunds and reversals of those charges
    (``charged``; a refund lowers it, reversing that refund raises it again)."""

    available: int
    charged: int


# All asked wallets in one statement. ``moved`` is every posting on a wallet or its grants that belongs to a usage
# charge or to a correction (refund, reversal); ``chain`` follows each correction's ``ref_entry_id`` through
# corrections of corrections (a reversal of a refund) down to the entry it finally corrects, and only those that
# end at a usage entry count (a reversed recharge is not charged money). The charged sum reads every charge of the
# wallet (the posting_account index, then the entry by primary key): O(charges), which the allow-list bounds.
_FIGURES = """
WITH RECURSIVE asked AS (SELECT * FROM unnest(CAST(:owners AS text[]), CAST(:names AS text[])) AS a(owner, name)),
wallet AS (SELECT a.owner, a.name, coalesce(bu.wallet_account_id, pr.wallet_account_id) AS id FROM asked a
             LEFT JOIN ledger.billing_user bu ON a.owner = 'user' AND bu.name = a.name
             LEFT JOIN ledger.project pr ON a.owner = 'project' AND pr.name = a.name),
held AS (SELECT owner, name, id FROM wallet WHERE id IS NOT NULL
         UNION ALL SELECT w.owner, w.name, g.account_id FROM wallet w
                     JOIN ledger.grant_account g ON g.wallet_account_id = w.id),
moved AS (SELECT h.owner, h.name, p.entry_id, p.amount, e.kind, e.ref_entry_id FROM held h
            JOIN ledger.posting p ON p.account_id = h.id JOIN ledger.journal_entry e ON e.id = p.entry_id
           WHERE e.kind IN ('usage', 'refund', 'reversal')),
chain (entry_id, ref) AS (SELECT DISTINCT entry_id, ref_entry_id FROM moved WHERE kind <> 'usage'
                          UNION ALL SELECT c.entry_id, r.ref_entry_id FROM chain c
                                      JOIN ledger.journal_entry r ON r.id = c.ref
                                     WHERE r.kind IN ('refund', 'reversal')),
of_usage AS (SELECT c.entry_id FROM chain c JOIN ledger.journal_entry t ON t.id = c.ref WHERE t.kind = 'usage')
SELECT w.owner, w.name,
       (SELECT coalesce(sum(b.debits - b.credits), 0) FROM ledger.account_balance b
          JOIN held h ON h.id = b.account_id WHERE h.owner = w.owner AND h.name = w.name) AS held,
       (SELECT coalesce(sum(m.amount), 0) FROM moved m WHERE m.owner = w.owner AND m.name = w.name
           AND (m.kind = 'usage' OR m.entry_id IN (SELECT entry_id FROM of_usage))) AS charged
  FROM wallet w WHERE w.id IS NOT NULL
"""


def wallet_figures(conn: Connection, wallets: Sequence[str]) -> dict[str, WalletFigures]:
    """``WalletFigures`` of each of ``wallets`` (``user:NAME``, ``project:NAME`` or a bare user name), keyed as
    asked, in one query whatever their number; wallets that do not exist are absent."""
    if not wallets:
        return {}
    refs = {wallet_ref(w): w for w in wallets}
    rows = conn.execute(text(_FIGURES), {"owners": [o for o, _ in refs], "names": [n for _, n in refs]})
    # A usage charge debits the wallet (a positive posting), so the posting sum is the money charged.
    return {refs[(owner, name)]: WalletFigures(available(int(held)), int(charged))
            for owner, name, held, charged in rows}


def burn_per_hour(conn: Connection, users: Sequence[str], now: datetime) -> dict[str, int]:
    """Micro-units each of ``users`` was charged over the hour before ``now`` (usage rows by interval end);
    users charged nothing are absent. Usage ending after ``now`` (a node whose clock runs ahead, or a history
    written ahead of the clock) is not yet burnt."""
    if not users:
        return {}
    rows = conn.execute(
        text(
            "SELECT bu.name, s.spent FROM (SELECT user_id, sum(amount) AS spent FROM ledger.usage"
            "  WHERE interval_end > CAST(:now AS timestamptz) - interval '1 hour'"
            "    AND interval_end <= CAST(:now AS timestamptz)"
            "    AND user_id IN (SELECT id FROM ledger.billing_user WHERE name = ANY(:users))"
            "  GROUP BY user_id) s JOIN ledger.billing_user bu ON bu.id = s.user_id"
        ),
        {"now": now, "users": list(users)},
    )
    return {row.name: int(row.spent) for row in rows}


# A statement's lines: each entry's net movement on the wallet's accounts over the period (entries that net to
# zero there are not lines), in (effective_at, id) order. Read from the postings' index alone: a posting carries
# its entry's effective_at (checked by the ledger's trigger), so the entries are joined only for lines shown.
_MOVEMENTS = (
    "WITH m AS (SELECT entry_id, effective_at, sum(amount) AS total FROM ledger.posting WHERE account_id = ANY(:ids)"
    "  AND effective_at >= :lo AND effective_at < :hi GROUP BY entry_id, effective_at HAVING sum(amount) <> 0)")


def nearer_the_end(conn: Connection, at: datetime) -> bool:
    """Whether ``at`` lies in the later half of the ledger's entries by time (two index reads): then fewer
    postings follow it than precede it, so its balances are cheaper from the balance cache backwards."""
    first, last = conn.execute(text("SELECT min(effective_at), max(effective_at) FROM ledger.journal_entry")).one()
    return first is not None and at - first > last - at


def _opening(conn: Connection, ids: Sequence[int], lo: datetime) -> int:
    if nearer_the_end(conn, lo):
        # The cache (every posting) less what is effective from ``lo`` on: exact, and a recent month's statement
        # reads the postings since it, not the whole history before it (20 -> 8 ms over a 10 M-posting year).
        return available(int(conn.execute(text(
            "SELECT coalesce((SELECT sum(debits - credits) FROM ledger.account_balance"
            "  WHERE account_id = ANY(:ids)), 0) - coalesce((SELECT sum(amount) FROM ledger.posting"
            "  WHERE account_id = ANY(:ids) AND effective_at >= :lo), 0)"), {"ids": ids, "lo": lo}).scalar_one()))
    return available(int(conn.execute(
        text("SELECT coalesce(sum(amount), 0) FROM ledger.posting WHERE account_id = ANY(:ids) AND effective_at < :lo"),
        {"ids": ids, "lo": lo},
    ).scalar_one()))


def statement(conn: Connection, wallet: str, start: date, end: date, tz: ZoneInfo) -> Statement:
    lo, hi = local_midnight(start, tz), local_midnight(end, tz)
    ids = wallet_accounts(conn, wallet)
    opening = _opening(conn, ids, lo)
    rows = conn.execute(
        text(_MOVEMENTS + " SELECT e.id, e.effective_at, e.kind, e.memo, m.total FROM m"  # noqa: S608 (constants)
             " JOIN ledger.journal_entry e ON e.id = m.entry_id ORDER BY m.effective_at, m.entry_id"),
        {"ids": ids, "lo": lo, "hi": hi},
    )
    running = opening
    lines = []
    for entry_id, effective_at, kind, memo, total in rows:
        amount = available(int(total))
        running += amount
        lines.append(StatementLine(int(entry_id), effective_at, kind, memo, amount, running))
    return Statement(wallet, lo, hi, opening, tuple(lines), running)


# A statement's lines as rows (at, id, total), with an optional keyset condition on (effective_at, entry_id): the
# grouping the index can feed in order, so a page stops after its lines and the sums stream (no window, no sort
# of the whole period).
_LINES = ("SELECT effective_at AS at, entry_id AS id, sum(amount) AS total FROM ledger.posting"
          " WHERE account_id = ANY(:ids) AND effective_at >= :lo AND effective_at < :hi{cursor}"
          " GROUP BY effective_at, entry_id HAVING sum(amount) <> 0")


def _line_at(conn: Connection, ids: Sequence[int], lo: datetime, hi: datetime, entry_id: int | None) -> datetime | None:
    """When entry ``entry_id`` is effective, if it is a line of this statement (else None): a page cursor."""
    if not entry_id:
        return None
    return conn.execute(text(
        "SELECT effective_at FROM ledger.posting WHERE entry_id = :e AND account_id = ANY(:ids)"
        " AND effective_at >= :lo AND effective_at < :hi GROUP BY effective_at HAVING sum(amount) <> 0"),
        {"e": entry_id, "ids": ids, "lo": lo, "hi": hi}).scalar_one_or_none()


def statement_page(conn: Connection, wallet: str, start: date, end: date, tz: ZoneInfo, *, limit: int,
                   after: int | None = None, before: int | None = None) -> StatementPage:
    """At most ``limit`` lines of ``statement``: the first ones, those after entry ``after``, or (``before``: an
    entry id, or 0 for the end) the last ones before it; keyset paging by entry, so a page does not shift when
    lines are added after it. One statement: the line count, the closing and the sum of the lines before the page
    are one streaming pass in the database (exact integers), the page's lines a second read that stops after
    ``limit`` lines; each running balance is that sum plus the page's lines up to it. A cursor that is not a line
    of this statement reads as the start (``after``) or the end (``before``)."""
    if after is not None and before is not None:
        raise LedgerError("a statement page is either after a line or before one", after=after, before=before)
    lo, hi = local_midnight(start, tz), local_midnight(end, tz)
    ids = wallet_accounts(conn, wallet)
    opening = _opening(conn, ids, lo)
    backward = before is not None
    cursor_id = before if backward else after
    cursor_at = _line_at(conn, ids, lo, hi, cursor_id)
    params = {"ids": ids, "lo": lo, "hi": hi, "cat": cursor_at, "cid": cursor_id, "limit": limit}
    if cursor_at is None:  # no cursor: the page starts at the first line (none before it), or ends at the last
        upto, keyset = "true" if backward else "false", ""
    else:
        upto, keyset = ("(at, id) < (:cat, :cid)", " AND (effective_at, entry_id) < (:cat, :cid)") if backward else (
            "(at, id) <= (:cat, :cid)", " AND (effective_at, entry_id) > (:cat, :cid)")
    count, net, lines_before, sum_before = conn.execute(text(
        f"SELECT count(*), coalesce(sum(total), 0), count(*) FILTER (WHERE {upto}),"  # noqa: S608 (constants)
        f" coalesce(sum(total) FILTER (WHERE {upto}), 0) FROM ({_LINES.format(cursor='')}) g"), params).one()
    order = "DESC" if backward else ""
    rows = conn.execute(text(
        f"SELECT p.id, p.at, e.kind, e.memo, p.total FROM (SELECT * FROM ({_LINES.format(cursor=keyset)}) g"  # noqa: S608
        f" ORDER BY at {order}, id {order} LIMIT :limit) p JOIN ledger.journal_entry e ON e.id = p.id"),
        params).all()
    shown = sorted(rows, key=lambda r: (r.at, r.id))
    # the sum of the lines before the page's first: the forward page's ``before`` sum, or the backward page's
    # less the page itself (it ends where that sum ends)
    cum = int(sum_before) - (sum(int(r.total) for r in shown) if backward else 0)
    first = int(lines_before) + 1 - (len(shown) if backward else 0)
    lines = []
    for entry_id, at, kind, memo, total in shown:
        cum += int(total)
        lines.append(StatementLine(int(entry_id), at, kind, memo, available(int(total)), opening + available(cum)))
    return StatementPage(wallet, lo, hi, opening, tuple(lines), opening + available(int(net)), int(count),
                         first if lines else int(count) + 1)


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


def usage(conn: Connection, start: date, end: date, by: str, tz: ZoneInfo,
          resource: str | None = None) -> list[UsageRow]:
    """Quantity and charge per ``by`` (user, node, model or resource) and unit, for intervals ending in the period;
    of one ``resource`` only when given (gpu and reservation share their unit and models)."""
    if by not in USAGE_KEYS:
        raise LedgerError(f"usage report by must be one of {sorted(USAGE_KEYS)}", by=by)
    key = USAGE_KEYS[by]
    rows = conn.execute(
        text(f"SELECT {key}, u.unit, sum(u.quantity), sum(u.amount) FROM ledger.usage u"  # noqa: S608
             " JOIN ledger.billing_user bu ON bu.id = u.user_id"
             " WHERE u.interval_end >= :lo AND u.interval_end < :hi"
             " AND (CAST(:resource AS text) IS NULL OR u.resource = :resource)"
             f" GROUP BY {key}, u.unit ORDER BY 1, 2"),
        {"lo": local_midnight(start, tz), "hi": local_midnight(end, tz), "resource": resource},
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
