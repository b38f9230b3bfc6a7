"""``audit verify``: the ledger's invariants as a list of checks, each yielding problems as data.

It trusts nothing it can recompute: entry balance and the trial balance from postings, the balance cache
from postings, the hash chain in Python (not the SQL that sealed it), every entry's payload hash, and every
usage charge re-rated from its stored facts and price version, with each epoch's cumulative quantities re-added.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from ledger import chain, journal, periods, prices, rating, rollup
from ledger.accounts import COUNTERS, MIGRATION_EQUITY, OPENING_COUNTER
from ledger.codec import usage_payload
from ledger.journal import sha256_of
from ledger.records import PriceVersion, Problem, UsageRecord, VerifyReport
from ledger.tickplan import entry_sha256

Check = Callable[[Connection], Iterator[Problem]]


def entries_balanced(conn: Connection) -> Iterator[Problem]:
    rows = conn.execute(text(
        "SELECT e.id, count(p.line), coalesce(sum(p.amount), 0) FROM ledger.journal_entry e"
        " LEFT JOIN ledger.posting p ON p.entry_id = e.id GROUP BY e.id"
        " HAVING count(p.line) < 2 OR coalesce(sum(p.amount), 0) <> 0"))
    for entry_id, n, total in rows:
        yield Problem("entry-balanced", f"entry {entry_id}", f"{n} postings summing to {total}")


def trial_balance_zero(conn: Connection) -> Iterator[Problem]:
    total = conn.execute(text("SELECT coalesce(sum(amount), 0) FROM ledger.posting")).scalar_one()
    if total != 0:
        yield Problem("trial-balance", "all accounts", f"postings sum to {total}, not 0")


def balance_cache(conn: Connection) -> Iterator[Problem]:
    rows = conn.execute(text(
        "WITH s AS (SELECT account_id, coalesce(sum(amount) FILTER (WHERE amount > 0), 0) AS d,"
        "           coalesce(-sum(amount) FILTER (WHERE amount < 0), 0) AS c FROM ledger.posting GROUP BY account_id)"
        " SELECT a.code, coalesce(b.debits, 0), coalesce(b.credits, 0), coalesce(s.d, 0), coalesce(s.c, 0)"
        "   FROM ledger.account a LEFT JOIN ledger.account_balance b ON b.account_id = a.id"
        "   LEFT JOIN s ON s.account_id = a.id"
        "  WHERE coalesce(b.debits, 0) <> coalesce(s.d, 0) OR coalesce(b.credits, 0) <> coalesce(s.c, 0)"))
    for code, debits, credits, real_d, real_c in rows:
        yield Problem("balance-cache", code,
                      f"cached debits/credits {debits}/{credits}, postings say {real_d}/{real_c}")


def effective_copies(conn: Connection) -> Iterator[Problem]:
    rows = conn.execute(text(
        "SELECT p.entry_id, p.line FROM ledger.posting p JOIN ledger.journal_entry e ON e.id = p.entry_id"
        " WHERE p.effective_at <> e.effective_at"))
    for entry_id, line in rows:
        yield Problem("posting-time", f"entry {entry_id} line {line}", "effective_at differs from its entry's")


def reversals(conn: Connection) -> Iterator[Problem]:
    rows = conn.execute(text(
        "SELECT r.id, r.ref_entry_id FROM ledger.journal_entry r WHERE r.kind = 'reversal' AND EXISTS ("
        " (SELECT account_id, -amount FROM ledger.posting WHERE entry_id = r.ref_entry_id"
        "  EXCEPT ALL SELECT account_id, amount FROM ledger.posting WHERE entry_id = r.id) UNION ALL"
        " (SELECT account_id, amount FROM ledger.posting WHERE entry_id = r.id"
        "  EXCEPT ALL SELECT account_id, -amount FROM ledger.posting WHERE entry_id = r.ref_entry_id))"))
    for entry_id, ref in rows:
        yield Problem("reversal", f"entry {entry_id}", f"postings are not the exact negation of entry {ref}'s")


def entry_payload_sha256(row: Any) -> bytes:
    """An entry's payload hash recomputed from what is stored (``journal.payload``): its kind, postings and
    referenced entry, and the facts each kind was posted with: a charge's usage record hash
    (``ledger.tickplan.entry_sha256``), a grant's expiry and an adjustment's counter (``ledger.operations``;
    ``opening`` for an imported opening balance, ``ledger.importing.apply``)."""
    postings = [(code, int(amount)) for _, code, amount in row.postings or ()]
    if row.kind == "usage":
        return entry_sha256(b"" if row.usage_sha is None else bytes(row.usage_sha), postings)
    facts: dict[str, Any] = {}
    if row.kind == "grant":
        facts = {"expires_at": row.grant_expires_at}
    elif row.kind == "adjustment":
        accounts = {code for code, _ in postings}
        opening = OPENING_COUNTER if any(c.startswith(MIGRATION_EQUITY + ":") for c in accounts) else None
        facts = {"counter": next((name for name, code in COUNTERS.items() if code in accounts), opening)}
    return sha256_of(journal.payload(row.kind, postings, row.ref_entry_id, facts))


def _entries_of(block: chain.Block) -> str:
    if block.first_entry_id == block.last_entry_id:
        return f"block {block.seq} (entry {block.first_entry_id})"
    return f"block {block.seq} (entries {block.first_entry_id}-{block.last_entry_id})"


def hash_chain(conn: Connection) -> Iterator[Problem]:
    """The chain block by block, and in the same pass every entry's payload hash: a block's hash says only that
    one of its entries changed; the payload names the entry when what changed is money (kind, postings,
    reference, facts). A block of one entry (every admin operation is one) names it either way."""
    with chain.entries(conn) as entry_rows, chain.blocks(conn) as block_rows:
        stream = iter(entry_rows)
        pending = next(stream, None)
        prev_hash, prev_last = chain.GENESIS, 0
        for row in block_rows:
            block = chain.block(row)
            texts = []
            while pending is not None and pending.id <= block.last_entry_id:
                texts.append(chain.canonical_entry(pending))
                if entry_payload_sha256(pending) != bytes(pending.payload_sha256):
                    yield Problem("entry-payload", f"entry {pending.id} ({pending.kind}, {pending.idem_key})"
                                  f" in block {block.seq}", "kind, postings, reference or facts do not match the"
                                  " stored payload hash")
                pending = next(stream, None)
            subject = _entries_of(block)
            if block.prev_hash != prev_hash:
                yield Problem("hash-chain", subject, "does not link to the previous block's hash")
            if len(texts) != block.entry_count or block.first_entry_id <= prev_last:
                yield Problem("hash-chain", subject,
                              f"covers {block.entry_count} entries after {prev_last}, found {len(texts)}")
            if chain.block_hash(block.prev_hash, texts) != block.block_hash:
                yield Problem("hash-chain", subject, "hash mismatch: an entry in it was changed")
            prev_hash, prev_last = block.block_hash, block.last_entry_id
        if pending is not None:
            yield Problem("hash-chain", f"entry {pending.id}", "not sealed into any block")


_USAGE_SQL = """
SELECT u.id, u.idem_key, u.payload_sha256, u.node, u.linux_user, u.resource, u.model, u.quantity, u.unit,
       u.interval_start, u.interval_end, u.method, u.evidence, u.epoch, u.price_version_id, u.cumulative_quantity,
       u.amount, e.id AS entry_id,
       (SELECT coalesce(sum(p.amount), 0) FROM ledger.posting p JOIN ledger.account a ON a.id = p.account_id
         WHERE p.entry_id = e.id AND a.kind = 'revenue') AS revenue
  FROM ledger.usage u LEFT JOIN ledger.journal_entry e ON e.usage_id = u.id
 ORDER BY u.id
"""


def usage_rerated(conn: Connection) -> Iterator[Problem]:
    book = {v.id: v for v in prices.load(conn)}
    with conn.execution_options(yield_per=2000).execute(text(_USAGE_SQL)) as rows:
        yield from _rerate(rows, book)


def _rerate(rows: Any, book: dict[int, PriceVersion]) -> Iterator[Problem]:
    cumulative: dict[tuple[str, int], Decimal] = {}
    for u in rows:
        subject = f"usage {u.id} ({u.idem_key})"
        record = UsageRecord(u.idem_key, u.linux_user, u.resource, Decimal(u.quantity), u.unit, u.interval_start,
                             u.interval_end, u.method, u.epoch, u.model, u.evidence)
        if sha256_of(usage_payload(u.node, record)) != bytes(u.payload_sha256):
            yield Problem("usage-facts", subject, "stored facts do not match their hash")
        if u.price_version_id is None:
            if u.amount != 0:
                yield Problem("re-rate", subject, f"charged {u.amount} without a price version")
        else:
            key = (u.epoch, int(u.price_version_id))
            price = book.get(int(u.price_version_id))
            rated = None if price is None else rating.rate(cumulative.get(key, Decimal(0)), record.quantity, price)
            if rated is None:
                yield Problem("re-rate", subject, f"price version {u.price_version_id} does not exist")
            elif rated.cumulative_quantity != u.cumulative_quantity:
                yield Problem("re-rate", subject, f"cumulative {u.cumulative_quantity}, the epoch's records add up"
                                                  f" to {rated.cumulative_quantity}")
            elif rated.amount != u.amount:
                yield Problem("re-rate", subject, f"stored charge {u.amount}, re-rated {rated.amount}")
            cumulative[key] = Decimal(u.cumulative_quantity)
        if (u.entry_id is not None) != (u.amount > 0) or -int(u.revenue or 0) != u.amount:
            yield Problem("usage-entry", subject,
                          f"charge {u.amount} but entry {u.entry_id} credits {-(u.revenue or 0)}")


def anchors_held(conn: Connection, anchors: Sequence[chain.Anchor], check: str = "anchor") -> Iterator[Problem]:
    """Every anchor must still be a block of the chain with the same hash, in one query however many there are
    (an anchor file gains a line a minute). A block that is gone means the chain lost its tail (truncated), a
    different hash that it was rewritten from there."""
    if not anchors:
        return
    end = chain.head(conn)
    rows = conn.execute(text(
        "SELECT a.n, encode(b.block_hash, 'hex') FROM unnest(CAST(:seqs AS bigint[]), CAST(:shas AS text[]))"
        " WITH ORDINALITY AS a(seq, sha, n) LEFT JOIN ledger.chain_block b ON b.seq = a.seq"
        " WHERE b.block_hash IS DISTINCT FROM decode(a.sha, 'hex') ORDER BY a.n"),
        {"seqs": [a.seq for a in anchors], "shas": [a.sha256.lower() for a in anchors]})
    for n, stored in rows:
        a = anchors[n - 1]
        if stored is None:
            yield Problem(check, f"block {a.seq}", f"gone: the chain ends at seq {end.seq if end else 0}, but"
                                                   f" {a.source} saw {a.sha256} there (the chain was truncated)")
        else:
            yield Problem(check, f"block {a.seq}", f"{a.source} saw {a.sha256}, the chain has {stored} (rewritten)")


_LATE_SQL = """
WITH c AS (SELECT through_day, closed_before, at, lead(at, 1, 'infinity') OVER (ORDER BY id) AS next_at
             FROM ledger.period_close)
SELECT 'entry' AS what, e.id, e.effective_at AS dated, c.through_day FROM c JOIN ledger.journal_entry e
    ON e.recorded_at >= c.at AND e.recorded_at < c.next_at AND e.effective_at < c.closed_before
UNION ALL
SELECT 'usage', u.id, u.interval_end, c.through_day FROM c JOIN ledger.usage u
    ON u.recorded_at >= c.at AND u.recorded_at < c.next_at AND u.interval_end < c.closed_before
ORDER BY 1, 2
"""


def closed_periods(conn: Connection) -> Iterator[Problem]:
    """Closed periods never changed: the chain still has the head each close saw, and nothing recorded after a
    close is dated before it (the schema refuses both; only a superuser with triggers disabled gets there).
    Closes only move forward, so each row is held to the newest close before it was recorded (``next_at``)."""
    closes = periods.closes(conn)
    yield from anchors_held(conn, [chain.Anchor(c.head.seq, c.head.sha256, f"the close through {c.through}")
                                   for c in closes if c.head is not None], "period-close")
    for what, row_id, dated, through in conn.execute(text(_LATE_SQL)):
        yield Problem("period-close", f"{what} {row_id}", f"dated {dated.isoformat()}, in the period closed through"
                                                          f" {through}, but recorded after the close")


def _shown(figures: rollup.RollupFigures | None) -> str:
    return "no row" if figures is None else (f"quantity {figures.quantity}, amount {figures.amount},"
                                             f" {figures.records} records")


def usage_rollup(conn: Connection) -> Iterator[Problem]:
    """The hourly rollup (derived data the console reads) equals the usage rows it sums, key by key: a rollup
    row changed, lost or added by hand shows as its key, with what is stored and what the ledger says."""
    for d in rollup.differences(conn):
        k = d.key
        yield Problem("usage-rollup", f"hour {k.hour.isoformat()} user {k.user_id} wallet {k.account_id}"
                      f" node {k.node} model {k.model or '-'} {k.resource} {k.unit}",
                      f"stored {_shown(d.stored)}; usage rows say {_shown(d.recomputed)}")


def usage_rollup_daily(conn: Connection) -> Iterator[Problem]:
    """The daily level equals the hourly level summed per local day (the hourly level is checked against the
    usage rows above, so together the daily level is checked against the ledger)."""
    for d in rollup.daily_differences(conn):
        yield Problem("usage-rollup-daily", f"day {d.day.isoformat()} user {d.user_id} wallet {d.account_id}"
                      f" node {d.node} model {d.model or '-'} {d.resource} {d.unit}",
                      f"stored {_shown(d.stored)}; hourly rows say {_shown(d.recomputed)}")


CHECKS: tuple[tuple[str, Check], ...] = (
    ("entries balanced", entries_balanced),
    ("trial balance is zero", trial_balance_zero),
    ("balance cache = postings", balance_cache),
    ("posting times = entry times", effective_copies),
    ("reversals negate their entry", reversals),
    ("hash chain and entry payloads", hash_chain),
    ("usage re-rated", usage_rerated),
    ("closed periods unchanged", closed_periods),
    ("usage rollup = usage rows", usage_rollup),
    ("daily rollup = hourly rollup", usage_rollup_daily),
)


def run(conn: Connection, anchors: Sequence[chain.Anchor] = ()) -> VerifyReport:
    """All checks; ``anchors`` are chain heads saved earlier, away from the database (an export's, the lines of
    the controller's anchor file), that must still match: the only thing that catches a chain rewritten or cut
    short consistently, since what is gone leaves nothing behind to recompute."""
    problems: list[Problem] = []
    counts: dict[str, Any] = {}
    for name, check in CHECKS:
        found = list(check(conn))
        counts[name] = len(found)
        problems.extend(found)
    if anchors:
        found = list(anchors_held(conn, anchors))
        counts["anchor"] = len(found)
        problems.extend(found)
    return VerifyReport(tuple(problems), counts, chain.head(conn))
