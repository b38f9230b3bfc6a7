"""The controller's path: node ticks of usage records -> usage rows and rated charge entries, in the caller's
transaction (it is the hot path; bench/ledger.py measures it). A transaction normally carries one node's tick;
``post_ticks`` also takes several (a controller catching up).

Each record is checked, resolved to the wallet it is charged to, priced, rated (telescoping, ledger.rating)
and, when its charge is not zero, posted as one ``usage`` entry: debit the wallet's grants (earliest expiry
first) and then the wallet, credit the resource's revenue account. What cannot be charged is returned as
rejected with a typed error, a memory record no price covers as skipped (ledger.tickplan has the rules); the
rest of the tick is still written. This module drives; ledger.tickplan decides (pure), ledger.tickstore reads
and writes.

Round trips, none of the first two under the writer lock (so that other writers' transactions overlap ours): (1)
BEGIN and one statement reading what is already recorded, who the Linux users are (and the holders reservation
records name), their wallets' grants, the price book's stamp, the newest usage and entry ids (high-water marks) and
the newest period close (records dated before it are rejected: ``PeriodClosed``); (2) the epochs' cumulative
quantities and the revenue accounts; (3) one call of ``ledger.post_usage`` (migrations 0003-0006, 0011; its
document: ledger.tickdoc) that takes the writer lock, checks under it that the price book, both marks and the close
are unchanged (nothing was written since (1), so nothing (1) and (2) read has moved: the argument is in 0004's
SQL), inserts usage rows, entries and postings and seals the chain block; then the caller's COMMIT. If another
writer committed in between, (3) writes nothing and returns NULL; the lock is ours by then, so reading again gives
current data and the second call succeeds. A replay (everything already recorded) stops after (1) and takes no
lock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from sqlalchemy.engine import Connection

from ledger import tickplan, tickstore
from ledger.records import PriceVersion, TickResult, UsageOutcome, UsageTick

PriceBook = Callable[[Connection, int], Sequence[PriceVersion]]


def post_ticks(conn: Connection, ticks: Sequence[UsageTick], book: PriceBook, currency: str) -> list[TickResult]:
    """Write ``ticks`` in ``conn``'s transaction: takes the writer lock and seals the chain; the caller commits.

    ``book(conn, stamp)`` returns the price versions given the newest version id (a cache may answer).
    """
    pg: tickstore.Pg | None = conn.connection.driver_connection
    assert pg is not None, "the tick path runs on a live psycopg connection"
    taken = tickplan.intake(ticks)
    if not taken.fresh:
        return tickplan.results(ticks, taken, None, [])
    sorted_, created = _post(pg, conn, taken.fresh, book, currency)
    return tickplan.results(ticks, taken, sorted_, created)


def _post(pg: tickstore.Pg, conn: Connection, fresh: Mapping[str, tickplan.Item], book: PriceBook,
          currency: str) -> tuple[tickplan.Sorted, list[UsageOutcome]]:
    """Read and rate without the writer lock, then write in one call that takes it and re-checks the read. When
    the read went stale (another writer committed in between), the call wrote nothing and the lock is now ours,
    so the second read is current and its call cannot fail that way."""
    pairs, holders = tickplan.billing_pairs(fresh), tickplan.holders(fresh)
    for _ in range(2):
        read = tickstore.read(pg, list(fresh), pairs, holders)
        sorted_ = tickplan.sort(fresh, read, book(conn, read.price_stamp))
        charges = _charges(pg, sorted_.priced, currency)
        rows = tickstore.write(pg, tickplan.document(read, charges)) if charges else []
        if rows is not None:
            break
    if rows is None:
        raise RuntimeError("the ledger changed under its writer lock")
    if sorted_.conflicts:
        tickstore.record_conflicts(pg, sorted_.conflicts)
    return sorted_, tickplan.written(charges, rows)


def _charges(pg: tickstore.Pg, priced: Sequence[tuple[tickplan.Item, tickplan.Wallet, PriceVersion]],
             currency: str) -> list[tickplan.Charge]:
    if not priced:
        return []
    codes, epochs = tickplan.rating_needs(priced)
    revenue_ids, cumulative = tickstore.rating_state(pg, codes, epochs, currency)
    return tickplan.rate(priced, revenue_ids, cumulative)
