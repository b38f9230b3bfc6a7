"""Immutable records the ledger hands out and takes in. Amounts are ``int`` micro-units; quantities and
prices are ``Decimal``; times are aware ``datetime`` (UTC when they come from the database)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from ledger.errors import LedgerError
from ledger.tiers import Tier

ENTRY_KINDS = ("usage", "recharge", "grant", "grant_expiry", "adjustment", "refund", "reversal")
# ``reservation`` is a GPU held by a queue grant and not used (docs/queue.md, "Money"): priced per GPU model like
# ``gpu``, charged to the grant's billing user (its records name that user, not a Linux account).
UNITS = {"gpu": "gpu-second", "cpu": "core-second", "memory": "GiB-second", "reservation": "gpu-second"}
BY_MODEL = frozenset({"gpu", "reservation"})  # priced by GPU model pattern; the others take no pattern
# Optional to price: a record of these no price covers is skipped (neither charged nor stored), so no price
# version means the resource is off.
OPTIONAL = frozenset({"memory", "reservation"})
# Records of these name a billing user in ``linux_user`` (the holder of a grant), resolved by that name alone.
HELD = frozenset({"reservation"})


@dataclass(frozen=True)
class User:
    id: int
    name: str
    display_name: str
    wallet: str
    project: str | None
    exempt: bool
    credit_limit: int | None
    created_at: datetime


@dataclass(frozen=True)
class Project:
    id: int
    name: str
    display_name: str
    wallet: str
    created_at: datetime


@dataclass(frozen=True)
class NodeUserMapping:
    node: str
    linux_user: str
    user: str


@dataclass(frozen=True)
class PostingLine:
    account: str
    amount: int


@dataclass(frozen=True)
class Entry:
    id: int
    kind: str
    idem_key: str
    payload_sha256: str
    effective_at: datetime
    recorded_at: datetime
    actor: str
    memo: str
    ref_entry_id: int | None
    usage_id: int | None
    postings: tuple[PostingLine, ...]


@dataclass(frozen=True)
class PostResult:
    """An entry and whether this call created it (False: an identical earlier post was found)."""

    entry: Entry
    created: bool


@dataclass(frozen=True)
class PriceVersion:
    id: int
    resource: str
    model_pattern: str
    match: str
    priority: int
    amount: Decimal
    per: Decimal
    unit: str
    valid_from: datetime
    actor: str
    memo: str


@dataclass(frozen=True)
class Balance:
    """What a wallet holds and its tiers under the thresholds asked for (``ledger.tiers.tier_for``):
    ``wallet_tier`` is the wallet's own (the holder's credit limit counted, their exemption not: what an
    override enforces on an exempt user); ``tier`` is the one that applies to the holder (normal when exempt)."""

    wallet: str
    available: int
    tier: Tier
    wallet_tier: Tier
    exempt: bool = False
    credit_limit: int | None = None


@dataclass(frozen=True)
class UsageRecord:
    """One measured use of one resource by one Linux user on one node over one interval.

    ``idem_key`` must be deterministic from the sample (a retry sends the same key and content);
    ``epoch`` names the counter the quantity comes from, so charges telescope within it (docs/ledger.md).
    """

    idem_key: str
    linux_user: str
    resource: str
    quantity: Decimal
    unit: str
    interval_start: datetime
    interval_end: datetime
    method: str
    epoch: str
    model: str = ""
    evidence: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class UsageTick:
    """All records of one node's tick: posted in one database transaction."""

    node: str
    records: tuple[UsageRecord, ...]
    actor: str = "controller"


@dataclass(frozen=True)
class UsageOutcome:
    idem_key: str
    usage_id: int
    entry_id: int | None
    user: str
    amount: int
    created: bool


@dataclass(frozen=True)
class RejectedUsage:
    record: UsageRecord
    error: LedgerError


@dataclass(frozen=True)
class TickResult:
    """What became of a tick's records, each in exactly one of: ``posted`` (written now or before),
    ``rejected`` (not written, with why: the caller may keep it and send it again), ``skipped`` (not written and
    not to be sent again: a memory record that no price covers; memory is optional to price, and a row per user
    and node every minute that charges nothing is not worth keeping)."""

    posted: tuple[UsageOutcome, ...]
    rejected: tuple[RejectedUsage, ...]
    skipped: tuple[UsageRecord, ...] = ()

    @property
    def postings_created(self) -> int:
        return sum(1 for o in self.posted if o.created and o.entry_id is not None)


@dataclass(frozen=True)
class StatementLine:
    entry_id: int
    effective_at: datetime
    kind: str
    memo: str
    amount: int
    running: int


@dataclass(frozen=True)
class Statement:
    """A wallet's movements over ``[start, end)`` (local dates); amounts are as the owner sees them
    (``available`` sign: a recharge is positive, a charge negative)."""

    wallet: str
    start: datetime
    end: datetime
    opening: int
    lines: tuple[StatementLine, ...]
    closing: int


@dataclass(frozen=True)
class StatementPage(Statement):
    """Some consecutive lines (``lines``) of a wallet's statement over ``[start, end)``, with the whole
    statement's opening, closing and line count: each line's ``running`` is the balance after it in the whole
    statement, so a page's figures are exactly the unpaged statement's. ``first`` is the 1-based number of the
    page's first line."""

    line_count: int
    first: int

    @property
    def has_earlier(self) -> bool:
        return self.first > 1

    @property
    def has_later(self) -> bool:
        return self.first - 1 + len(self.lines) < self.line_count


@dataclass(frozen=True)
class TrialBalanceRow:
    account: str
    kind: str
    balance: int


@dataclass(frozen=True)
class TrialBalance:
    rows: tuple[TrialBalanceRow, ...]

    @property
    def total(self) -> int:
        return sum(r.balance for r in self.rows)


@dataclass(frozen=True)
class UsageRow:
    key: str
    unit: str
    quantity: Decimal
    amount: int


@dataclass(frozen=True)
class RevenueRow:
    account: str
    amount: int


@dataclass(frozen=True)
class ChainHead:
    seq: int
    sha256: str


@dataclass(frozen=True)
class Problem:
    """One discrepancy found by ``audit verify``: which check, about what, and what was found."""

    check: str
    subject: str
    detail: str


@dataclass(frozen=True)
class VerifyReport:
    problems: tuple[Problem, ...]
    counts: Mapping[str, int]
    head: ChainHead | None

    @property
    def ok(self) -> bool:
        return not self.problems
