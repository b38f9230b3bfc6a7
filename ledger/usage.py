"""The controller's path: node ticks of usage records -> usage rows and rated charge entries, in the caller's
transaction (it is the hot path; bench/ledger.py measures it). A transaction normally carries one node's tick;
``post_ticks`` also takes several (a controller catching up).

Each record is checked, resolved to the wallet it is charged to, priced, rated (telescoping,
ledger.rating) and, when its charge is not zero, posted as one ``usage`` entry: debit the wallet's grants
(earliest expiry first) and then the wallet, credit the resource's revenue account. Records that cannot
be charged are returned as rejected with a typed error; the rest of the tick is still written.

Round trips, none of the first two under the writer lock (so that other writers' transactions overlap
ours): (1) BEGIN and one statement reading what is already recorded, who the Linux users are, their wallets'
grants, the price book's stamp, the newest usage and entry ids (high-water marks) and the newest period close
(records dated before it are rejected: ``PeriodClosed``); (2) the epochs' cumulative quantities and the revenue
accounts; (3) one call of ``ledger.post_usage`` (migrations 0003-0005) that takes the writer lock, checks under
it that the price book, both marks and the close are unchanged (nothing was
written since (1), so nothing (1) and (2) read has moved: the argument is in 0004's SQL), inserts usage rows,
entries and postings and seals the chain block; then the caller's COMMIT. If another writer committed in
between, (3) writes nothing and returns NULL; the lock is ours by then, so reading again gives current data
and the second call succeeds. A replay (everything already recorded) stops after (1) and takes no lock. Rows
travel as one JSON parameter each way (psycopg's per-element array adaptation cost more than the database
work).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.engine import Connection

from ledger import journal, rating
from ledger.accounts import revenue_code
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
    UNITS,
    PriceVersion,
    RejectedUsage,
    TickResult,
    UsageOutcome,
    UsageRecord,
    UsageTick,
)

USAGE_ENTRY_PREFIX = "usage:"
_MAX_KEY = 500
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def usage_payload(node: str, r: UsageRecord) -> dict[str, Any]:
    """The facts of a record that its idempotency key stands for (what ``audit verify`` re-hashes)."""
    return {
        "node": node, "linux_user": r.linux_user, "resource": r.resource, "model": r.model,
        "quantity": journal.plain(r.quantity), "unit": r.unit, "interval_start": journal.plain(r.interval_start),
        "interval_end": journal.plain(r.interval_end), "method": r.method, "evidence": dict(r.evidence),
        "epoch": r.epoch,
    }


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
    if r.resource == "gpu" and not r.model:
        return bad("a GPU record needs its model")
    if not (node and r.linux_user and r.method and r.epoch):
        return bad("node, linux_user, method and epoch must not be empty")
    return None


def entry_sha256(digest: bytes, postings: Iterable[tuple[str, int]]) -> bytes:
    """The payload hash of a charged usage record's entry, which covers the usage record's hash ``digest``:
    ``journal.payload_sha256`` of that entry, without building its Draft (the entry itself is written by
    ledger.post_usage: key USAGE_ENTRY_PREFIX + the record's key, effective at the interval's end)."""
    return journal.sha256_of(journal.payload("usage", postings, None, {"usage_sha256": digest.hex()}))


@dataclass
class _Grant:
    account_id: int
    code: str
    expires_at: datetime | None
    remaining: int


@dataclass
class _Wallet:
    user_id: int
    user: str
    account_id: int
    code: str
    grants: list[_Grant]  # in spending order

    def split(self, amount: int, at: datetime) -> list[tuple[int, str, int]]:
        """Debit lines for ``amount``: unexpired grants first (earliest expiry first), then the wallet."""
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


_READ_SQL = """
WITH resolved AS (
  SELECT l.node, l.lu, bu.id AS uid, bu.name, w.id AS wid, w.code
    FROM jsonb_to_recordset(%(users)s::jsonb) AS l(node text, lu text)
    LEFT JOIN LATERAL (SELECT m.user_id FROM ledger.node_user_map m
                        WHERE m.linux_user = l.lu AND m.node IN (l.node, '*')
                        ORDER BY m.node = '*' LIMIT 1) m ON true
    JOIN ledger.billing_user bu ON bu.id = coalesce(m.user_id, (SELECT id FROM ledger.billing_user WHERE name = l.lu))
    LEFT JOIN ledger.project p ON p.id = bu.project_id
    JOIN ledger.account w ON w.id = coalesce(p.wallet_account_id, bu.wallet_account_id)
)
SELECT (SELECT coalesce(max(id), 0) FROM ledger.price_version),
       (SELECT coalesce(max(id), 0) FROM ledger.usage),
       (SELECT coalesce(max(id), 0) FROM ledger.journal_entry),
       (SELECT coalesce(jsonb_agg(jsonb_build_array(u.idem_key, encode(u.payload_sha256, 'hex'), u.id, u.amount,
                                                    (SELECT e.id FROM ledger.journal_entry e WHERE e.usage_id = u.id),
                                                    (SELECT bu.name FROM ledger.billing_user bu WHERE bu.id = u.user_id)
                                                    )), '[]')
          -- a lateral lookup per key: with a long key list the planner would otherwise scan the whole table
          FROM unnest(string_to_array(%(keys)s, E'\\x1f')) AS k(key)
          JOIN LATERAL (SELECT * FROM ledger.usage WHERE idem_key = k.key) u ON true),
       (SELECT coalesce(jsonb_agg(jsonb_build_array(node, lu, uid, name, wid, code)), '[]') FROM resolved),
       ledger.wallet_grants(ARRAY(SELECT DISTINCT wid FROM resolved ORDER BY wid)),
       (SELECT max(closed_before) FROM ledger.period_close)
"""

_STATE_SQL = """
WITH want AS (SELECT code FROM jsonb_array_elements_text(%(codes)s::jsonb) AS w(code)),
ins AS (INSERT INTO ledger.account (code, kind, currency)
        SELECT code, 'revenue', %(currency)s FROM want ON CONFLICT (code) DO NOTHING RETURNING id, code)
SELECT (SELECT coalesce(jsonb_agg(jsonb_build_array(code, id)), '[]')
          FROM (SELECT id, code FROM ins UNION ALL SELECT a.id, a.code FROM ledger.account a JOIN want USING (code)) c),
       ledger.epoch_state(%(pairs)s::jsonb)
"""

_SEP = "\x1f"  # unit separator: the keys travel as one text parameter (check_record refuses it in keys)


@dataclass(frozen=True)
class _Item:
    tick: int
    node: str
    actor: str
    record: UsageRecord
    digest: bytes


@dataclass
class _Charge:
    item: _Item
    wallet: _Wallet
    price: PriceVersion | None
    cumulative: Decimal
    amount: int
    lines: list[tuple[int, str, int]]  # (account_id, code, amount)


def post_ticks(conn: Connection, ticks: Sequence[UsageTick],
               book: Callable[[Connection, int], Sequence[PriceVersion]], currency: str) -> list[TickResult]:
    """Write ``ticks`` in ``conn``'s transaction: takes the writer lock and seals the chain; the caller commits.

    ``book(conn, stamp)`` returns the price versions given the newest version id (a cache may answer).
    """
    pg = conn.connection.driver_connection
    assert pg is not None
    rejected: list[list[RejectedUsage]] = [[] for _ in ticks]
    outcomes: list[list[UsageOutcome]] = [[] for _ in ticks]
    fresh: dict[str, _Item] = {}
    repeats: list[tuple[int, str]] = []  # the same record twice in one call: one row, reported to both ticks
    for n, tick in enumerate(ticks):
        for r in tick.records:
            problem = check_record(tick.node, r)
            if problem is None:
                try:
                    digest = journal.sha256_of(usage_payload(tick.node, r))
                except TypeError as exc:
                    problem = InvalidUsage(r.idem_key, f"evidence must be JSON data ({exc})")
            if problem is not None:
                rejected[n].append(RejectedUsage(r, problem))
                continue
            seen = fresh.get(r.idem_key)
            if seen is None:
                fresh[r.idem_key] = _Item(n, tick.node, tick.actor, r, digest)
            elif seen.digest != digest:
                rejected[n].append(RejectedUsage(r, IdempotencyConflict(r.idem_key, seen.digest.hex(), digest.hex())))
            else:
                repeats.append((n, r.idem_key))
    first = {key: item.tick for key, item in fresh.items()}
    if fresh:
        _post(pg, fresh, book, currency, conn, outcomes, rejected)
    written = {o.idem_key: o for n in set(first.values()) for o in outcomes[n]}
    refusals = {x.record.idem_key: x for n in set(first.values()) for x in rejected[n]}
    for n, key in repeats:
        if key in written:
            outcomes[n].append(replace(written[key], created=False))
        else:
            rejected[n].append(refusals[key])
    results = []
    for tick, posted, refused in zip(ticks, outcomes, rejected, strict=True):
        order = {r.idem_key: n for n, r in enumerate(tick.records)}
        posted.sort(key=lambda o: order[o.idem_key])
        results.append(TickResult(tuple(posted), tuple(refused)))
    return results


def _post(pg: Any, fresh: dict[str, _Item], book: Callable[[Connection, int], Sequence[PriceVersion]], currency: str,
          conn: Connection, outcomes: list[list[UsageOutcome]], rejected: list[list[RejectedUsage]]) -> None:
    """Read and rate without the writer lock, then write in one call that takes it and re-checks the read. When
    the read went stale (another writer committed in between), the call wrote nothing and the lock is now ours,
    so the second read is current and its call cannot fail that way."""
    for _ in range(2):
        plan = _plan(pg, fresh, book, currency, conn)
        written = _write(pg, plan.charges, plan.doc) if plan.charges else []
        if written is not None:
            break
    else:
        raise RuntimeError("the ledger changed under its writer lock")
    if plan.conflicts:
        pg.cursor().executemany(
            "INSERT INTO ledger.idempotency_conflict (idem_key, existing_sha256, attempted_sha256, actor)"
            " VALUES (%s, %s, %s, %s)", plan.conflicts)
    for tick, outcome in plan.outcomes:
        outcomes[tick].append(outcome)
    for tick, refusal in plan.rejected:
        rejected[tick].append(refusal)
    for outcome in written:
        outcomes[fresh[outcome.idem_key].tick].append(outcome)


@dataclass
class _Plan:
    outcomes: list[tuple[int, UsageOutcome]]  # (tick, outcome) of records written before
    rejected: list[tuple[int, RejectedUsage]]
    conflicts: list[tuple[str, bytes, bytes, str]]
    charges: list[_Charge]
    doc: dict[str, Any]  # ledger.post_usage's argument, less the rows (see _write)


def _plan(pg: Any, fresh: dict[str, _Item], book: Callable[[Connection, int], Sequence[PriceVersion]],
          currency: str, conn: Connection) -> _Plan:
    users = sorted({(i.node, i.record.linux_user) for i in fresh.values()})
    with pg.pipeline():  # the transaction's BEGIN goes out with the read: one round trip
        read = pg.execute(_READ_SQL, {
            "keys": _SEP.join(fresh), "users": json.dumps([{"node": n, "lu": lu} for n, lu in users]),
        })
    stamp, usage_mark, entry_mark, existing, resolved, grants, closed_before = read.fetchone()
    plan = _Plan([], [], [], [], {})
    new = dict(fresh)
    for key, stored_hex, usage_id, amount, entry_id, user in existing:
        item = new.pop(key)
        if bytes.fromhex(stored_hex) == item.digest:
            plan.outcomes.append((item.tick, UsageOutcome(key, usage_id, entry_id, user, amount, created=False)))
        else:
            plan.rejected.append((item.tick, RejectedUsage(item.record, IdempotencyConflict(key, stored_hex,
                                                                                            item.digest.hex()))))
            plan.conflicts.append((key, bytes.fromhex(stored_hex), item.digest, item.actor))
    # One list of grants per wallet, shared by every (node, Linux user) charged to it: a user on several nodes of
    # a batch, or a project's members, spend the same grants, and each split must see what the others took.
    spending = {
        str(wid): [_Grant(g[0], g[1], None if g[2] is None else datetime.fromisoformat(g[2]), int(g[3]))
                   for g in grants.get(str(wid), ())]
        for *_, wid, _ in resolved
    }
    wallets = {(node, lu): _Wallet(uid, name, wid, code, spending[str(wid)])
               for node, lu, uid, name, wid, code in resolved}
    versions = book(conn, int(stamp))
    priced: list[tuple[_Item, _Wallet, PriceVersion | None]] = []
    chosen: dict[tuple[str, str, datetime], PriceVersion | None] = {}  # a node's records share their start
    for item in new.values():
        r = item.record
        wallet = wallets.get((item.node, r.linux_user))
        at = (r.resource, r.model, r.interval_start)
        price = chosen[at] if at in chosen else chosen.setdefault(
            at, rating.select_price(versions, r.resource, r.model, r.interval_start))
        if closed_before is not None and r.interval_end < closed_before:
            plan.rejected.append((item.tick, RejectedUsage(r, PeriodClosed(r.interval_end.isoformat(),
                                                                           closed_before.isoformat()))))
        elif wallet is None:
            plan.rejected.append((item.tick, RejectedUsage(r, UnknownUser(r.linux_user, item.node))))
        elif price is None and r.resource != "memory":
            plan.rejected.append((item.tick, RejectedUsage(r, MissingPrice(r.resource, r.model or None,
                                                                           r.interval_start.isoformat()))))
        else:
            priced.append((item, wallet, price))
    if priced:
        plan.charges = _rate(pg, priced, currency)
        plan.doc = {"stamp": int(stamp), "usage_mark": int(usage_mark), "entry_mark": int(entry_mark),
                    "closed_before": closed_before, "prefix": USAGE_ENTRY_PREFIX}
    return plan


def _rate(pg: Any, priced: list[tuple[_Item, _Wallet, PriceVersion | None]], currency: str) -> list[_Charge]:
    pairs = sorted({(i.record.epoch, p.id) for i, _, p in priced if p is not None})
    codes = sorted({revenue_code(i.record.resource, i.record.model) for i, _, p in priced if p is not None})
    pair_rows = [{"epoch": e, "pv": pv} for e, pv in pairs]
    # A revenue account another transaction is creating at the same time: our INSERT waits for it to commit and
    # then does nothing, but the statement's snapshot predates that commit; the next statement's does not.
    for _ in range(2):
        accounts_json, state_json = pg.execute(_STATE_SQL, {
            "codes": json.dumps(codes), "currency": currency, "pairs": json.dumps(pair_rows),
        }).fetchone()
        revenue_ids = dict(accounts_json)
        if len(revenue_ids) == len(codes):
            break
    state = {(e, pv): Decimal(cq) for e, pv, cq in state_json if cq is not None}

    charges: list[_Charge] = []
    for item, wallet, price in priced:
        r = item.record
        if price is None:  # memory without a price: recorded, not charged
            charges.append(_Charge(item, wallet, None, r.quantity, 0, []))
            continue
        rated = rating.rate(state.get((r.epoch, price.id), Decimal(0)), r.quantity, price)
        state[(r.epoch, price.id)] = rated.cumulative_quantity
        lines = []
        if rated.amount:
            code = revenue_code(r.resource, r.model)
            lines = [*wallet.split(rated.amount, r.interval_start),
                     (revenue_ids[code], code, signed(Side.CREDIT, rated.amount))]
        charges.append(_Charge(item, wallet, price, rated.cumulative_quantity, rated.amount, lines))
    return charges


def _write(pg: Any, charges: list[_Charge], doc: dict[str, Any]) -> list[UsageOutcome] | None:
    """One round trip: ledger.post_usage takes the writer lock, checks that nothing was written since the read,
    inserts, seals. None: stale read."""
    usage_rows, posting_rows = [], []
    for c in charges:
        r = c.item.record
        entry_hash = ""
        if c.amount:
            entry_hash = entry_sha256(c.item.digest, ((code, amount) for _, code, amount in c.lines)).hex()
            posting_rows += [{"k": r.idem_key, "line": n, "acc": acc, "amt": amount}
                             for n, (acc, _, amount) in enumerate(c.lines, start=1)]
        usage_rows.append({
            "k": r.idem_key, "h": c.item.digest.hex(), "node": c.item.node, "lu": r.linux_user,
            "uid": c.wallet.user_id, "acc": c.wallet.account_id, "res": r.resource, "model": r.model,
            "q": journal.plain(r.quantity), "unit": r.unit, "t0": journal.plain(r.interval_start),
            "t1": journal.plain(r.interval_end), "method": r.method, "ev": dict(r.evidence), "epoch": r.epoch,
            "pv": c.price.id if c.price else None, "cq": journal.plain(c.cumulative), "amt": c.amount,
            "eh": entry_hash, "actor": c.item.actor,
        })
    (written,) = pg.execute("SELECT ledger.post_usage(%s::jsonb)", (json.dumps(
        {**doc, "usage": usage_rows, "postings": posting_rows}, ensure_ascii=False, default=journal.plain),)).fetchone()
    if written is None:
        return None
    by_key = {c.item.record.idem_key: c for c in charges}
    return [UsageOutcome(key, usage_id, entry_id, by_key[key].wallet.user, by_key[key].amount, created=True)
            for key, usage_id, entry_id in written]
