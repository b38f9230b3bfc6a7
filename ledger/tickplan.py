"""The tick path's pure part (ledger.usage drives it; ledger.tickstore does its I/O): checking, hashing and
de-duplicating records, sorting them against what the ledger holds, rating them, splitting each charge over its
wallet's grants, and building the ``ledger.post_usage`` document. No database and no clock: every function takes
what it needs and returns its result.

A record ends in exactly one of the outcomes of ``TickResult`` (ledger.records):
  * posted: written by this call, or before (a replay: same key, same hash);
  * rejected, with a typed error: invalid, the same key with other content, dated in a closed period, a Linux
    user no billing user answers to (or, for a reservation, a holder no billing user is named), or no price for a
    GPU or CPU record;
  * skipped: a memory or reservation record that no price covers (``records.OPTIONAL``). These are optional to
    price: such a record is neither charged nor stored (a row per user and node every minute that charges
    nothing), and the caller need not send it again; a reservation with no price version is the charge switched
    off. This is the one place the rule lives.

A reservation record (``records.HELD``) names the billing user holding a queue grant in ``linux_user``: it is
charged to that user's wallet (their project's when they are in one), resolved by the name alone, never through
the Linux-user map (the grant is to a billing user; no Linux account on the node need exist).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal

from ledger import journal, rating
from ledger.accounts import revenue_code
from ledger.codec import usage_payload
from ledger.errors import (
    IdempotencyConflict,
    InvalidUsage,
    LedgerError,
    MissingPrice,
    PeriodClosed,
    UnitMismatch,
    UnknownUser,
)
from ledger.money import Side, signed
from ledger.records import (
    BY_MODEL,
    HELD,
    OPTIONAL,
    UNITS,
    PriceVersion,
    RejectedUsage,
    TickResult,
    UsageOutcome,
    UsageRecord,
    UsageTick,
)
from ledger.tickdoc import DocumentPosting, DocumentUsage, PostUsageDocument

USAGE_ENTRY_PREFIX = "usage:"
RESERVATION_MEMO = "reservation"  # the memo of a reservation charge's entry: how statements and exports tell it
KEY_SEPARATOR = "\x1f"  # unit separator: keys travel as one text parameter (check_record refuses it in keys)
_MAX_KEY = 500
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_record(node: str, r: UsageRecord) -> LedgerError | None:
    """Why ``r`` cannot be recorded, or None."""
    def bad(reason: str) -> InvalidUsage:
        return InvalidUsage(r.idem_key, reason)

    if not r.idem_key or len(r.idem_key) > _MAX_KEY:
        return bad(f"idem_key must be 1-{_MAX_KEY} characters")
    if _CONTROL.search(r.idem_key) or _CONTROL.search(r.linux_user):
        return bad("idem_key and linux_user must not contain control characters")
    if r.resource not in UNITS:
        return bad(f"resource must be one of {sorted(UNITS)}")
    if r.unit != UNITS[r.resource]:
        return UnitMismatch(r.resource, UNITS[r.resource], r.unit)
    if not isinstance(r.quantity, Decimal) or not r.quantity.is_finite() or r.quantity < 0:
        return bad("quantity must be a finite Decimal >= 0")
    if r.interval_start.tzinfo is None or r.interval_end.tzinfo is None:
        return bad("interval times must carry a time zone")
    if r.interval_end < r.interval_start:
        return bad("interval ends before it starts")
    if r.resource in BY_MODEL and not r.model:
        return bad("a GPU or reservation record needs its model")
    if not (node and r.linux_user and r.method and r.epoch):
        return bad("node, linux_user, method and epoch must not be empty")
    try:  # the record's hash encodes it so (and cannot fail on the other fields once they are checked)
        journal.canonical_json(r.evidence)
    except TypeError as exc:
        return bad(f"evidence must be JSON data ({exc})")
    return None


def entry_sha256(digest: bytes, postings: Iterable[tuple[str, int]]) -> bytes:
    """The payload hash of a charged usage record's entry, which covers the usage record's hash ``digest``:
    ``journal.payload_sha256`` of that entry, without building its Draft (the entry itself is written by
    ledger.post_usage: key USAGE_ENTRY_PREFIX + the record's key, effective at the interval's end)."""
    return journal.sha256_of(journal.payload("usage", postings, None, {"usage_sha256": digest.hex()}))


# -- intake: what can be sent at all ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Item:
    """A checked record to look up and maybe write: the first of its key in the call."""

    tick: int  # index of the tick it came in
    node: str
    actor: str
    record: UsageRecord

    @functools.cached_property
    def digest(self) -> bytes:
        """The record's hash (``usage_payload``), made when first needed: a record the ledger skips is never
        hashed (hashing is most of a record's cost here)."""
        return journal.sha256_of(usage_payload(self.node, self.record))


@dataclass(frozen=True)
class Intake:
    fresh: dict[str, Item]                    # key -> item, one per key, in the order first seen
    rejected: tuple[tuple[int, RejectedUsage], ...]
    repeats: tuple[tuple[int, str], ...]      # (tick, key): the same record again in the call


def intake(ticks: Sequence[UsageTick]) -> Intake:
    """Check every record; the same record twice in one call is one row, reported to both ticks."""
    fresh: dict[str, Item] = {}
    rejected: list[tuple[int, RejectedUsage]] = []
    repeats: list[tuple[int, str]] = []
    for n, tick in enumerate(ticks):
        for r in tick.records:
            problem = check_record(tick.node, r)
            if problem is not None:
                rejected.append((n, RejectedUsage(r, problem)))
                continue
            item = Item(n, tick.node, tick.actor, r)
            seen = fresh.get(r.idem_key)
            if seen is None:
                fresh[r.idem_key] = item
            elif seen.digest != item.digest:
                rejected.append((n, RejectedUsage(r, IdempotencyConflict(r.idem_key, seen.digest.hex(),
                                                                         item.digest.hex()))))
            else:
                repeats.append((n, r.idem_key))
    return Intake(fresh, tuple(rejected), tuple(repeats))


def billing_pairs(fresh: Mapping[str, Item]) -> list[tuple[str, str]]:
    """The (node, Linux user) pairs to resolve to billing users."""
    return sorted({(i.node, i.record.linux_user) for i in fresh.values() if i.record.resource not in HELD})


def holders(fresh: Mapping[str, Item]) -> list[str]:
    """The billing users named by reservation records, resolved by name."""
    return sorted({i.record.linux_user for i in fresh.values() if i.record.resource in HELD})


# -- what the ledger holds (ledger.tickstore.read) ---------------------------------------------------------------

@dataclass(frozen=True)
class Stored:
    """A usage row already recorded under a key of the call."""

    idem_key: str
    payload_sha256: bytes
    usage_id: int
    amount: int
    entry_id: int | None
    user: str


@dataclass(frozen=True)
class Resolved:
    """Who a Linux user on a node bills to, and the wallet charged (ledger.billing_users); for a holder of a
    grant (``LedgerRead.holders``), ``node`` is empty and ``linux_user`` is the billing user's name."""

    node: str
    linux_user: str
    user_id: int
    user: str
    wallet_account_id: int
    wallet_code: str


@dataclass(frozen=True)
class GrantLeft:
    """A grant with money left, as read."""

    account_id: int
    code: str
    expires_at: datetime | None
    remaining: int


@dataclass(frozen=True)
class LedgerRead:
    """The first read of a call (one statement, before the writer lock); its marks go back in the document."""

    price_stamp: int
    usage_mark: int
    entry_mark: int
    stored: tuple[Stored, ...]
    resolved: tuple[Resolved, ...]
    grants: Mapping[int, tuple[GrantLeft, ...]]  # wallet account id -> its grants in spending order
    closed_before: datetime | None
    holders: tuple[Resolved, ...] = ()  # the billing users reservation records name, by name


# -- sorting and rating ----------------------------------------------------------------------------------------

@dataclass
class _Grant:
    """A grant as this call spends it (``remaining`` goes down as charges are split)."""

    account_id: int
    code: str
    expires_at: datetime | None
    remaining: int


@dataclass
class Wallet:
    """The wallet a Linux user's records are charged to, with the grants they spend first."""

    user_id: int
    user: str
    account_id: int
    code: str
    grants: list[_Grant] = field(default_factory=list)  # in spending order, shared by all who charge the wallet

    def split(self, amount: int, at: datetime) -> list[tuple[int, str, int]]:
        """Debit lines (account id, code, amount) for ``amount``: unexpired grants first (earliest expiry first),
        then the wallet. Takes what it uses from the grants."""
        lines = []
        left = amount
        for g in self.grants:
            if not left:
                break
            if g.remaining <= 0 or (g.expires_at is not None and g.expires_at <= at):
                continue
            take = min(left, g.remaining)
            g.remaining -= take
            lines.append((g.account_id, g.code, signed(Side.DEBIT, take)))
            left -= take
        if left:
            lines.append((self.account_id, self.code, signed(Side.DEBIT, left)))
        return lines


@dataclass(frozen=True)
class Conflict:
    """A key recorded before with other content: refused, and counted in ledger.idempotency_conflict."""

    idem_key: str
    existing_sha256: bytes
    attempted_sha256: bytes
    actor: str


@dataclass(frozen=True)
class Sorted:
    """The fresh items against what the ledger holds: each in one list."""

    written_before: tuple[tuple[int, UsageOutcome], ...]
    rejected: tuple[tuple[int, RejectedUsage], ...]
    skipped: tuple[tuple[int, UsageRecord], ...]
    conflicts: tuple[Conflict, ...]
    priced: tuple[tuple[Item, Wallet, PriceVersion], ...]  # to rate and write


def sort(fresh: Mapping[str, Item], read: LedgerRead, versions: Sequence[PriceVersion]) -> Sorted:
    """Sort ``fresh`` by what ``read`` holds and which of ``versions`` prices each record."""
    written_before: list[tuple[int, UsageOutcome]] = []
    rejected: list[tuple[int, RejectedUsage]] = []
    skipped: list[tuple[int, UsageRecord]] = []
    conflicts: list[Conflict] = []
    priced: list[tuple[Item, Wallet, PriceVersion]] = []
    new = dict(fresh)
    for s in read.stored:
        item = new.pop(s.idem_key)
        if s.payload_sha256 == item.digest:
            written_before.append((item.tick, UsageOutcome(s.idem_key, s.usage_id, s.entry_id, s.user, s.amount,
                                                           created=False)))
        else:
            rejected.append((item.tick, RejectedUsage(item.record, IdempotencyConflict(
                s.idem_key, s.payload_sha256.hex(), item.digest.hex()))))
            conflicts.append(Conflict(s.idem_key, s.payload_sha256, item.digest, item.actor))
    # One list of grants per wallet, shared by every (node, Linux user) charged to it: a user on several nodes of
    # a batch, or a project's members, spend the same grants, and each split must see what the others took.
    spending = {
        r.wallet_account_id: [_Grant(g.account_id, g.code, g.expires_at, g.remaining)
                              for g in read.grants.get(r.wallet_account_id, ())]
        for r in (*read.resolved, *read.holders)
    }
    wallets = {(r.node, r.linux_user): Wallet(r.user_id, r.user, r.wallet_account_id, r.wallet_code,
                                              spending[r.wallet_account_id])
               for r in read.resolved}
    held = {r.user: Wallet(r.user_id, r.user, r.wallet_account_id, r.wallet_code, spending[r.wallet_account_id])
            for r in read.holders}
    chosen: dict[tuple[str, str, datetime], PriceVersion | None] = {}  # a node's records share their start
    closed_before = read.closed_before
    for item in new.values():
        r = item.record
        at = (r.resource, r.model, r.interval_start)
        price = chosen[at] if at in chosen else chosen.setdefault(
            at, rating.select_price(versions, r.resource, r.model, r.interval_start))
        wallet = held.get(r.linux_user) if r.resource in HELD else wallets.get((item.node, r.linux_user))
        if price is None and r.resource in OPTIONAL:
            skipped.append((item.tick, r))
        elif closed_before is not None and r.interval_end < closed_before:
            rejected.append((item.tick, RejectedUsage(r, PeriodClosed(r.interval_end.isoformat(),
                                                                      closed_before.isoformat()))))
        elif wallet is None:
            node = None if r.resource in HELD else item.node  # a holder is a billing user, on no node
            rejected.append((item.tick, RejectedUsage(r, UnknownUser(r.linux_user, node))))
        elif price is None:
            rejected.append((item.tick, RejectedUsage(r, MissingPrice(r.resource, r.model or None,
                                                                      r.interval_start.isoformat()))))
        else:
            priced.append((item, wallet, price))
    return Sorted(tuple(written_before), tuple(rejected), tuple(skipped), tuple(conflicts), tuple(priced))


def rating_needs(priced: Sequence[tuple[Item, Wallet, PriceVersion]]) -> tuple[list[str], list[tuple[str, int]]]:
    """The revenue account codes the charges credit, and the (epoch, price version) pairs whose cumulative
    quantities rating continues from."""
    codes = sorted({revenue_code(i.record.resource, i.record.model) for i, _, _ in priced})
    pairs = sorted({(i.record.epoch, p.id) for i, _, p in priced})
    return codes, pairs


@dataclass(frozen=True)
class Charge:
    item: Item
    wallet: Wallet
    price: PriceVersion
    cumulative: Decimal
    amount: int
    lines: tuple[tuple[int, str, int], ...]  # (account id, code, amount); empty when amount is 0


def rate(priced: Sequence[tuple[Item, Wallet, PriceVersion]], revenue_ids: Mapping[str, int],
         cumulative: Mapping[tuple[str, int], Decimal]) -> list[Charge]:
    """Rate ``priced`` in order, each epoch continuing from ``cumulative`` (newest cumulative quantity per
    (epoch, price version); absent: 0), and split each charge over its wallet's grants."""
    state = dict(cumulative)
    charges = []
    for item, wallet, price in priced:
        r = item.record
        rated = rating.rate(state.get((r.epoch, price.id), Decimal(0)), r.quantity, price)
        state[(r.epoch, price.id)] = rated.cumulative_quantity
        lines: tuple[tuple[int, str, int], ...] = ()
        if rated.amount:
            code = revenue_code(r.resource, r.model)
            lines = (*wallet.split(rated.amount, r.interval_start),
                     (revenue_ids[code], code, signed(Side.CREDIT, rated.amount)))
        charges.append(Charge(item, wallet, price, rated.cumulative_quantity, rated.amount, lines))
    return charges


def document(read: LedgerRead, charges: Sequence[Charge]) -> PostUsageDocument:
    """The ``ledger.post_usage`` argument that writes ``charges``, checked against the marks of ``read``."""
    usage: list[DocumentUsage] = []
    postings: list[DocumentPosting] = []
    for c in charges:
        r = c.item.record
        entry_hash = ""
        if c.amount:
            entry_hash = entry_sha256(c.item.digest, ((code, amount) for _, code, amount in c.lines)).hex()
            postings += [DocumentPosting(idem_key=r.idem_key, line=n, account_id=account, amount=amount)
                         for n, (account, _, amount) in enumerate(c.lines, start=1)]
        usage.append(DocumentUsage(
            idem_key=r.idem_key, payload_sha256=c.item.digest.hex(), node=c.item.node, linux_user=r.linux_user,
            user_id=c.wallet.user_id, account_id=c.wallet.account_id, resource=r.resource, model=r.model,
            quantity=journal.plain(r.quantity), unit=r.unit, interval_start=journal.plain(r.interval_start),
            interval_end=journal.plain(r.interval_end), method=r.method, evidence=dict(r.evidence), epoch=r.epoch,
            price_version_id=c.price.id, cumulative_quantity=journal.plain(c.cumulative), amount=c.amount,
            entry_sha256=entry_hash, actor=c.item.actor, memo=RESERVATION_MEMO if r.resource in HELD else "",
        ))
    return PostUsageDocument(
        price_stamp=read.price_stamp, usage_mark=read.usage_mark, entry_mark=read.entry_mark,
        closed_before=None if read.closed_before is None else journal.plain(read.closed_before),
        entry_key_prefix=USAGE_ENTRY_PREFIX, usage=usage, postings=postings,
    )


def written(charges: Sequence[Charge], rows: Sequence[tuple[str, int, int | None]]) -> list[UsageOutcome]:
    """The outcomes of ``charges`` from what ledger.post_usage returned: (key, usage id, entry id or None)."""
    by_key = {c.item.record.idem_key: c for c in charges}
    return [UsageOutcome(key, usage_id, entry_id, by_key[key].wallet.user, by_key[key].amount, created=True)
            for key, usage_id, entry_id in rows]


# -- results -----------------------------------------------------------------------------------------------------

def results(ticks: Sequence[UsageTick], taken: Intake, sorted_: Sorted | None,
            created: Sequence[UsageOutcome]) -> list[TickResult]:
    """Each tick's result, its records in the tick's order in each outcome; a record repeated in the call has the
    outcome of its first (posted ones as not created)."""
    posted: list[list[UsageOutcome]] = [[] for _ in ticks]
    rejected: list[list[RejectedUsage]] = [[] for _ in ticks]
    skipped: list[list[UsageRecord]] = [[] for _ in ticks]
    for n, refusal in taken.rejected:
        rejected[n].append(refusal)
    if sorted_ is not None:
        for n, outcome in sorted_.written_before:
            posted[n].append(outcome)
        for n, refusal in sorted_.rejected:
            rejected[n].append(refusal)
        for n, record in sorted_.skipped:
            skipped[n].append(record)
    for outcome in created:
        posted[taken.fresh[outcome.idem_key].tick].append(outcome)
    firsts = {item.tick for item in taken.fresh.values()}
    written_by_key = {o.idem_key: o for n in firsts for o in posted[n]}
    refused_by_key = {x.record.idem_key: x for n in firsts for x in rejected[n]}
    skipped_keys = {r.idem_key for n in firsts for r in skipped[n]}
    for n, key in taken.repeats:
        if key in written_by_key:
            posted[n].append(replace(written_by_key[key], created=False))
        elif key in skipped_keys:
            skipped[n].append(taken.fresh[key].record)
        else:
            rejected[n].append(refused_by_key[key])
    out = []
    for tick, p, x, s in zip(ticks, posted, rejected, skipped, strict=True):
        order = {r.idem_key: i for i, r in enumerate(tick.records)}
        p.sort(key=lambda o: order[o.idem_key])
        s.sort(key=lambda r: order[r.idem_key])
        out.append(TickResult(tuple(p), tuple(x), tuple(s)))
    return out
