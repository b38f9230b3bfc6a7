"""The controller's path: a node's tick of usage records -> usage rows and rated charge entries, in the
caller's write transaction, with as few round trips as possible (it is the hot path; see bench/ledger.py).

Each record is checked, resolved to the wallet it is charged to, priced, rated (telescoping, ledger.rating)
and, when its charge is not zero, posted as one ``usage`` entry: debit the wallet's grants (earliest
expiry first) and then the wallet, credit the resource's revenue account. Records that cannot be charged
are returned as rejected with a typed error; the rest of the tick is still written.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.engine import Connection

from ledger import journal, rating
from ledger.accounts import revenue_code
from ledger.errors import IdempotencyConflict, InvalidUsage, LedgerError, MissingPrice, UnitMismatch, UnknownUser
from ledger.records import (
    UNITS,
    PostingLine,
    PriceVersion,
    RejectedUsage,
    TickResult,
    UsageOutcome,
    UsageRecord,
    UsageTick,
)

USAGE_ENTRY_PREFIX = "usage:"
_MAX_KEY = 500


def usage_payload(node: str, r: UsageRecord) -> dict[str, Any]:
    """The facts of a record that its idempotency key stands for (what ``audit verify`` re-hashes)."""
    return {
        "node": node, "linux_user": r.linux_user, "resource": r.resource, "model": r.model,
        "quantity": r.quantity, "unit": r.unit, "interval_start": r.interval_start, "interval_end": r.interval_end,
        "method": r.method, "evidence": dict(r.evidence), "epoch": r.epoch,
    }


def check_record(node: str, r: UsageRecord) -> LedgerError | None:
    """Why ``r`` cannot be recorded, or None."""
    def bad(reason: str) -> InvalidUsage:
        return InvalidUsage(r.idem_key, reason)

    if not r.idem_key or len(r.idem_key) > _MAX_KEY:
        return bad(f"idem_key must be 1-{_MAX_KEY} characters")
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
    try:
        json.dumps(journal.canonical(r.evidence))
    except (TypeError, ValueError):
        return bad("evidence must be JSON data")
    return None


@dataclass
class _Wallet:
    user_id: int
    user: str
    account_id: int
    code: str
    grants: list[list[Any]]  # [account_id, code, expires_at, remaining] in spending order


_RESOLVE_SQL = """
SELECT l.lu, bu.id AS user_id, bu.name, w.id AS wallet_id, w.code,
       (SELECT coalesce(jsonb_agg(jsonb_build_array(g.account_id, a.code, g.expires_at, b.credits - b.debits)
                                  ORDER BY g.expires_at NULLS LAST, g.entry_id), '[]')
          FROM ledger.grant_account g
          JOIN ledger.account a ON a.id = g.account_id
          JOIN ledger.account_balance b ON b.account_id = g.account_id
         WHERE g.wallet_account_id = w.id AND b.credits > b.debits) AS grants
  FROM unnest(%(users)s::text[]) AS l(lu)
  LEFT JOIN LATERAL (SELECT m.user_id FROM ledger.node_user_map m
                      WHERE m.linux_user = l.lu AND m.node IN (%(node)s, '*')
                      ORDER BY m.node = '*' LIMIT 1) m ON true
  JOIN ledger.billing_user bu
    ON bu.id = coalesce(m.user_id, (SELECT id FROM ledger.billing_user WHERE name = l.lu))
  LEFT JOIN ledger.project p ON p.id = bu.project_id
  JOIN ledger.account w ON w.id = coalesce(p.wallet_account_id, bu.wallet_account_id)
"""

_EXISTING_SQL = """
SELECT u.idem_key, u.payload_sha256, u.id, u.amount, e.id AS entry_id, bu.name
  FROM ledger.usage u
  JOIN ledger.billing_user bu ON bu.id = u.user_id
  LEFT JOIN ledger.journal_entry e ON e.usage_id = u.id
 WHERE u.idem_key = ANY(%(keys)s::text[])
"""

_EPOCH_SQL = """
SELECT x.epoch, x.pv,
       (SELECT u.cumulative_quantity FROM ledger.usage u
         WHERE u.epoch = x.epoch AND u.price_version_id = x.pv ORDER BY u.id DESC LIMIT 1)
  FROM unnest(%(epochs)s::text[], %(pvs)s::bigint[]) AS x(epoch, pv)
"""

_ACCOUNTS_SQL = """
WITH want AS (SELECT code FROM unnest(%(codes)s::text[]) AS w(code)),
ins AS (INSERT INTO ledger.account (code, kind, currency)
        SELECT code, 'revenue', %(currency)s FROM want ON CONFLICT (code) DO NOTHING RETURNING id, code)
SELECT id, code FROM ins UNION ALL SELECT a.id, a.code FROM ledger.account a JOIN want USING (code)
"""

_INSERT_SQL = """
WITH u AS (
  INSERT INTO ledger.usage (idem_key, payload_sha256, node, linux_user, user_id, account_id, resource, model,
                            quantity, unit, interval_start, interval_end, method, evidence, epoch,
                            price_version_id, cumulative_quantity, amount)
  SELECT k, h, %(node)s, lu, uid, acc, res, model, q, unit, t0, t1, method, ev::jsonb, epoch, pv, cq, amt
    FROM unnest(%(k)s::text[], %(h)s::bytea[], %(lu)s::text[], %(uid)s::bigint[], %(acc)s::bigint[],
                %(res)s::text[], %(model)s::text[], %(q)s::numeric[], %(unit)s::text[], %(t0)s::timestamptz[],
                %(t1)s::timestamptz[], %(method)s::text[], %(ev)s::text[], %(epoch)s::text[], %(pv)s::bigint[],
                %(cq)s::numeric[], %(amt)s::bigint[])
         AS x(k, h, lu, uid, acc, res, model, q, unit, t0, t1, method, ev, epoch, pv, cq, amt)
  RETURNING id, idem_key
), e AS (
  INSERT INTO ledger.journal_entry (idem_key, payload_sha256, kind, effective_at, usage_id, actor)
  SELECT %(prefix)s || u.idem_key, y.h, 'usage', y.eff, u.id, %(actor)s
    FROM u JOIN unnest(%(ek)s::text[], %(eh)s::bytea[], %(eff)s::timestamptz[]) AS y(k, h, eff) ON y.k = u.idem_key
  RETURNING id, usage_id, effective_at
), p AS (
  INSERT INTO ledger.posting (entry_id, line, account_id, amount, effective_at)
  SELECT e.id, z.line, z.acc, z.amt, e.effective_at
    FROM u JOIN e ON e.usage_id = u.id
    JOIN unnest(%(pk)s::text[], %(pl)s::int[], %(pa)s::bigint[], %(pm)s::bigint[]) AS z(k, line, acc, amt)
      ON z.k = u.idem_key
  RETURNING 1
)
SELECT u.idem_key, u.id, e.id, (SELECT count(*) FROM p) FROM u LEFT JOIN e ON e.usage_id = u.id
"""


@dataclass
class _Charge:
    record: UsageRecord
    digest: bytes
    wallet: _Wallet
    price: PriceVersion | None
    cumulative: Decimal
    amount: int
    postings: tuple[tuple[int, str, int], ...]  # (account_id, code, amount)


def _split(wallet: _Wallet, amount: int, at: datetime, revenue: tuple[int, str]) -> tuple[tuple[int, str, int], ...]:
    """Debit the wallet's unexpired grants first (earliest expiry first), the rest from the wallet itself."""
    lines: list[tuple[int, str, int]] = []
    left = amount
    for grant in wallet.grants:
        account_id, code, expires_at, remaining = grant
        if left == 0:
            break
        if remaining <= 0 or (expires_at is not None and datetime.fromisoformat(expires_at) <= at):
            continue
        take = min(left, remaining)
        grant[3] = remaining - take
        lines.append((account_id, code, take))
        left -= take
    if left:
        lines.append((wallet.account_id, wallet.code, left))
    lines.append((revenue[0], revenue[1], -amount))
    return tuple(lines)


def post_tick(conn: Connection, tick: UsageTick, book: Sequence[PriceVersion], currency: str) -> TickResult:
    """Write ``tick`` in the caller's transaction (which holds the writer lock: ``ledger.db.writing``)."""
    cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    rejected: list[RejectedUsage] = []
    outcomes: list[UsageOutcome] = []
    fresh: dict[str, tuple[UsageRecord, bytes]] = {}
    for r in tick.records:
        problem = check_record(tick.node, r)
        if problem is not None:
            rejected.append(RejectedUsage(r, problem))
            continue
        digest = journal.sha256_of(usage_payload(tick.node, r))
        seen = fresh.get(r.idem_key)
        if seen is not None:
            if seen[1] != digest:
                rejected.append(RejectedUsage(r, IdempotencyConflict(r.idem_key, seen[1].hex(), digest.hex())))
            continue
        fresh[r.idem_key] = (r, digest)
    if not fresh:
        return TickResult((), tuple(rejected))

    conflicts: list[tuple[str, bytes, bytes]] = []
    for key, stored, usage_id, amount, entry_id, user in cur.execute(_EXISTING_SQL, {"keys": list(fresh)}):
        record, digest = fresh.pop(key)
        if bytes(stored) == digest:
            outcomes.append(UsageOutcome(key, usage_id, entry_id, user, amount, created=False))
        else:
            rejected.append(RejectedUsage(record, IdempotencyConflict(key, bytes(stored).hex(), digest.hex())))
            conflicts.append((key, bytes(stored), digest))

    wallets: dict[str, _Wallet] = {}
    if fresh:
        users = sorted({r.linux_user for r, _ in fresh.values()})
        rows = cur.execute(_RESOLVE_SQL, {"users": users, "node": tick.node})
        for lu, user_id, name, wallet_id, code, grants in rows:
            wallets[lu] = _Wallet(user_id, name, wallet_id, code, [[g[0], g[1], g[2], int(g[3])] for g in grants])

    priced: list[tuple[UsageRecord, bytes, _Wallet, PriceVersion | None]] = []
    for key, (r, digest) in list(fresh.items()):
        wallet = wallets.get(r.linux_user)
        price = rating.select_price(book, r.resource, r.model, r.interval_start)
        error: LedgerError | None = None
        if wallet is None:
            error = UnknownUser(r.linux_user, tick.node)
        elif price is None and r.resource != "memory":
            error = MissingPrice(r.resource, r.model or None, r.interval_start.isoformat())
        if error is not None:
            rejected.append(RejectedUsage(r, error))
            del fresh[key]
            continue
        assert wallet is not None
        priced.append((r, digest, wallet, price))

    state: dict[tuple[str, int], Decimal] = {}
    pairs = sorted({(r.epoch, p.id) for r, _, _, p in priced if p is not None})
    if pairs:
        rows = cur.execute(_EPOCH_SQL, {"epochs": [e for e, _ in pairs], "pvs": [p for _, p in pairs]})
        state = {(e, pv): Decimal(cq) for e, pv, cq in rows if cq is not None}
    revenue_codes = sorted({revenue_code(r.resource, r.model) for r, _, _, p in priced if p is not None})
    revenue_ids: dict[str, int] = {}
    if revenue_codes:
        rows = cur.execute(_ACCOUNTS_SQL, {"codes": revenue_codes, "currency": currency})
        revenue_ids = {code: id_ for id_, code in rows}

    charges: list[_Charge] = []
    for r, digest, wallet, price in priced:
        if price is None:  # memory without a price: recorded, not charged
            charges.append(_Charge(r, digest, wallet, None, r.quantity, 0, ()))
            continue
        prev = state.get((r.epoch, price.id), Decimal(0))
        rated = rating.rate(prev, r.quantity, price)
        state[(r.epoch, price.id)] = rated.cumulative_quantity
        code = revenue_code(r.resource, r.model)
        postings = _split(wallet, rated.amount, r.interval_start, (revenue_ids[code], code)) if rated.amount else ()
        charges.append(_Charge(r, digest, wallet, price, rated.cumulative_quantity, rated.amount, postings))

    if conflicts:
        cur.executemany(
            "INSERT INTO ledger.idempotency_conflict (idem_key, existing_sha256, attempted_sha256, actor)"
            " VALUES (%s, %s, %s, %s)",
            [(k, old, new, tick.actor) for k, old, new in conflicts],
        )
    if charges:
        outcomes.extend(_insert(cur, tick, charges))
    order = {r.idem_key: n for n, r in enumerate(tick.records)}
    outcomes.sort(key=lambda o: order[o.idem_key])
    return TickResult(tuple(outcomes), tuple(rejected))


def entry_draft(record: UsageRecord, digest: bytes, postings: Sequence[PostingLine], actor: str) -> journal.Draft:
    """The journal entry of a charged usage record (its payload hash covers the usage record's hash)."""
    return journal.Draft(
        kind="usage", idem_key=USAGE_ENTRY_PREFIX + record.idem_key, effective_at=record.interval_end,
        postings=tuple(postings), actor=actor, facts={"usage_sha256": digest.hex()},
    )


def _insert(cur: Any, tick: UsageTick, charges: list[_Charge]) -> list[UsageOutcome]:
    cols: dict[str, list[Any]] = {k: [] for k in (
        "k", "h", "lu", "uid", "acc", "res", "model", "q", "unit", "t0", "t1", "method", "ev", "epoch", "pv", "cq",
        "amt", "ek", "eh", "eff", "pk", "pl", "pa", "pm")}
    for c in charges:
        r = c.record
        for name, value in (("k", r.idem_key), ("h", c.digest), ("lu", r.linux_user), ("uid", c.wallet.user_id),
                            ("acc", c.wallet.account_id), ("res", r.resource), ("model", r.model), ("q", r.quantity),
                            ("unit", r.unit), ("t0", r.interval_start), ("t1", r.interval_end),
                            ("method", r.method), ("ev", json.dumps(journal.canonical(r.evidence), sort_keys=True)),
                            ("epoch", r.epoch), ("pv", c.price.id if c.price else None), ("cq", c.cumulative),
                            ("amt", c.amount)):
            cols[name].append(value)
        if not c.amount:
            continue
        draft = entry_draft(r, c.digest, [PostingLine(code, amount) for _, code, amount in c.postings], tick.actor)
        cols["ek"].append(r.idem_key)
        cols["eh"].append(journal.payload_sha256(draft))
        cols["eff"].append(r.interval_end)
        for line, (account_id, _, amount) in enumerate(c.postings, start=1):
            cols["pk"].append(r.idem_key)
            cols["pl"].append(line)
            cols["pa"].append(account_id)
            cols["pm"].append(amount)
    params = dict(cols, node=tick.node, actor=tick.actor, prefix=USAGE_ENTRY_PREFIX)
    rows = cur.execute(_INSERT_SQL, params).fetchall()
    by_key = {c.record.idem_key: c for c in charges}
    return [UsageOutcome(key, usage_id, entry_id, by_key[key].wallet.user, by_key[key].amount, created=True)
            for key, usage_id, entry_id, _ in rows]
