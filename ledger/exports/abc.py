"""The export contract, and the one pass over the ledger every format shares.

An exporter writes, in order: a header carrying the chain head and declaring every account; for a period
with a start, an opening entry with the balances brought forward, income and expenses closed into
``EARNINGS`` (so the period's income statement is the period's); every entry effective in the period in
(date, id) order, with the facts people filter on (``ExportEntry.facts``, ``payee``, ``link``); and closing
balance assertions taken from separate database queries (not re-summed from what was written), so a
reader's tool checks our arithmetic against the database's. Every amount is
written with exactly six decimals. Memory stays flat: entries are streamed from a server-side cursor.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import IO, Any, ClassVar
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.engine import Connection

from ledger import chain
from ledger.records import ChainHead
from ledger.reports import local_midnight, nearer_the_end


@dataclass(frozen=True)
class Usage:
    """What a usage charge was for: the fields people filter a charge on."""

    key: str
    user: str
    node: str
    resource: str
    model: str
    quantity: Decimal
    unit: str
    price_version: int | None


@dataclass(frozen=True)
class ExportEntry:
    id: int
    day: date
    effective_at: datetime
    kind: str
    idem_key: str
    memo: str
    ref_entry_id: int | None
    usage_id: int | None
    postings: tuple[tuple[int, str, int], ...]  # (line, account code, amount)
    usage: Usage | None

    @property
    def wallet(self) -> str | None:
        """The wallet the entry moves money in or out of (a grant counts as its wallet), if any."""
        for _, code, _ in self.postings:
            if code.startswith(WALLET_PREFIX):
                return ":".join(code.split(":")[:4])
        return None

    @property
    def user(self) -> str | None:
        """The billing user: the one who used the resource, else the owner of a user wallet."""
        if self.usage is not None:
            return self.usage.user
        wallet = self.wallet
        return wallet.removeprefix(USER_WALLET) if wallet and wallet.startswith(USER_WALLET) else None

    @property
    def payee(self) -> str:
        """Who the entry is about, as people look for it: the user, else the wallet, else the entry kind."""
        return self.user or self.wallet or self.kind

    def facts(self) -> tuple[tuple[str, str], ...]:
        """The metadata both ledger formats carry (Beancount metadata, hledger tags), in this order."""
        facts = [("user", self.user), ("wallet", self.wallet)]
        if self.usage is not None:
            u = self.usage
            facts += [("node", u.node), ("resource", u.resource), ("model", u.model or None),
                      ("quantity", format(u.quantity, "f")), ("unit", u.unit),
                      ("price-version", None if u.price_version is None else str(u.price_version)),
                      ("usage-key", u.key)]
        return tuple((name, value) for name, value in facts if value is not None)

    @property
    def link(self) -> int:
        """The entry a correction shares its link with: the one it corrects, else itself."""
        return self.ref_entry_id or self.id


@dataclass(frozen=True)
class Account:
    code: str
    kind: str


WALLET_PREFIX = "liabilities:wallet:"
EARNINGS = "equity:earnings:previous"
"""Where a period export's opening entry puts the income and expenses of everything before the period; an
account of the export only (the ledger has none such)."""
FLOW_ROOTS = ("revenues", "expenses")
USER_WALLET = WALLET_PREFIX + "user:"

_ENTRIES_SQL = """
SELECT e.id, e.effective_at, e.kind, e.idem_key, e.memo, e.ref_entry_id, e.usage_id, p.line, a.code, p.amount,
       u.idem_key AS usage_key, bu.name AS usage_user, u.node, u.resource, u.model, u.quantity, u.unit,
       u.price_version_id
  FROM ledger.journal_entry e JOIN ledger.posting p ON p.entry_id = e.id JOIN ledger.account a ON a.id = p.account_id
  LEFT JOIN ledger.usage u ON u.id = e.usage_id LEFT JOIN ledger.billing_user bu ON bu.id = u.user_id
 WHERE e.effective_at >= :lo AND e.effective_at < :hi
 ORDER BY e.effective_at, e.id, p.line
"""


def _income_or_expense(code: str) -> bool:
    return code.split(":", 1)[0] in FLOW_ROOTS


def _closed_into_equity(balances: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    """The balances brought forward to a period's start, with income and expenses closed into ``EARNINGS``
    (Beancount's ``Equity:Earnings:Previous``, hledger's ``close --retain``): the period's income statement
    then shows only the period, while the balance sheet still balances."""
    earnings = sum(amount for code, amount in balances if _income_or_expense(code))
    kept = [(code, amount) for code, amount in balances if not _income_or_expense(code)]
    return sorted([*kept, (EARNINGS, earnings)])


def _period_flows(closing: Sequence[tuple[str, int]], brought: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    """What the file's accounts must hold at the period's end once income and expenses started it at zero:
    their movement in the period (the database's closing minus its opening), the rest as the database says."""
    before = dict(brought)
    flows = [(code, amount - before.get(code, 0) if _income_or_expense(code) else amount) for code, amount in closing]
    earnings = sum(amount for code, amount in brought if _income_or_expense(code))
    return sorted([*flows, (EARNINGS, earnings)])


class Exporter(abc.ABC):
    """One export format. ``write`` is the whole contract; subclasses only render the parts."""

    name: ClassVar[str]

    def __init__(self, currency: str, tz: ZoneInfo) -> None:
        self.currency = currency
        self.tz = tz

    def write(self, conn: Connection, out: IO[str], start: date | None, end: date | None) -> ChainHead | None:
        """Write the entries effective in ``[start, end)`` (local dates; None = unbounded); return the chain head
        the file carries."""
        head = chain.head(conn)
        accounts = [Account(c, k) for c, k in conn.execute(text("SELECT code, kind FROM ledger.account ORDER BY code"))]
        lo = local_midnight(start, self.tz) if start else datetime(1970, 1, 1, tzinfo=self.tz)
        hi = local_midnight(end, self.tz) if end else datetime(9999, 1, 1, tzinfo=self.tz)
        first_day = start or self._first_day(conn)
        brought: list[tuple[str, int]] = []
        if start is not None:
            brought = self._balances(conn, lo)
            accounts = sorted([*accounts, Account(EARNINGS, "equity")], key=lambda a: a.code)
        self.header(out, head, accounts, first_day)
        if start is not None:
            self.opening(out, start, [(code, amount) for code, amount in _closed_into_equity(brought) if amount])
        last_day = first_day
        for entry in self._entries(conn, lo, hi):
            self.entry(out, entry)
            last_day = entry.day
        closing_day = end - timedelta(days=1) if end else last_day
        closing = self._balances(conn, hi if end else None)
        if start is not None:
            closing = _period_flows(closing, brought)
        self.closing(out, max(closing_day, last_day), closing)
        return head

    def _first_day(self, conn: Connection) -> date:
        first = conn.execute(text("SELECT min(effective_at) FROM ledger.journal_entry")).scalar()
        return first.astimezone(self.tz).date() if first else date(1970, 1, 1)

    def _balances(self, conn: Connection, before: datetime | None) -> list[tuple[str, int]]:
        if before is None:
            rows = conn.execute(text(
                "SELECT a.code, coalesce(b.debits - b.credits, 0) FROM ledger.account a"
                " LEFT JOIN ledger.account_balance b ON b.account_id = a.id ORDER BY a.code"))
        elif nearer_the_end(conn, before):
            # The cache (every posting) less what is effective from ``before`` on: exact, and it reads only the
            # postings after the instant. A day's export near now summed the whole history twice (3.1 s over a
            # year of 10 M postings: the revenue accounts' index ranges), to find what this subtracts from.
            rows = conn.execute(text(
                "SELECT a.code, coalesce(b.debits - b.credits, 0) - coalesce((SELECT sum(p.amount)"
                " FROM ledger.posting p WHERE p.account_id = a.id AND p.effective_at >= :t), 0)"
                " FROM ledger.account a LEFT JOIN ledger.account_balance b ON b.account_id = a.id ORDER BY a.code"),
                {"t": before})
        else:
            rows = conn.execute(text(
                "SELECT a.code, coalesce((SELECT sum(p.amount) FROM ledger.posting p WHERE p.account_id = a.id"
                " AND p.effective_at < :t), 0) FROM ledger.account a ORDER BY a.code"), {"t": before})
        return [(code, int(amount)) for code, amount in rows]

    def _entries(self, conn: Connection, lo: datetime, hi: datetime) -> Iterator[ExportEntry]:
        with conn.execution_options(yield_per=5000).execute(text(_ENTRIES_SQL), {"lo": lo, "hi": hi}) as rows:
            current: list[Any] = []
            for row in rows:
                if current and current[0].id != row.id:
                    yield self._entry(current)
                    current = []
                current.append(row)
            if current:
                yield self._entry(current)

    def _entry(self, rows: Sequence[Any]) -> ExportEntry:
        r = rows[0]
        usage = None if r.usage_id is None else Usage(
            r.usage_key, r.usage_user, r.node, r.resource, r.model, Decimal(r.quantity), r.unit, r.price_version_id)
        return ExportEntry(int(r.id), r.effective_at.astimezone(self.tz).date(), r.effective_at, r.kind, r.idem_key,
                           r.memo, r.ref_entry_id, r.usage_id, tuple((x.line, x.code, int(x.amount)) for x in rows),
                           usage)

    @abc.abstractmethod
    def header(self, out: IO[str], head: ChainHead | None, accounts: Sequence[Account], first_day: date) -> None:
        """Declarations: currency with six decimals, every account (opened no later than ``first_day``),
        the chain head."""

    @abc.abstractmethod
    def opening(self, out: IO[str], day: date, balances: Sequence[tuple[str, int]]) -> None:
        """Balances brought forward to ``day`` (non-zero only; they sum to zero)."""

    @abc.abstractmethod
    def entry(self, out: IO[str], entry: ExportEntry) -> None:
        """One journal entry with all its postings."""

    @abc.abstractmethod
    def closing(self, out: IO[str], day: date, balances: Sequence[tuple[str, int]]) -> None:
        """Assertions that each account's balance at the end of ``day`` is what the database says."""
