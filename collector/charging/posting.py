"""One node sample -> evidence, usage records and ledger entries, in ONE database transaction.

In one transaction, which ``ledger.usage.post_ticks`` joins (it takes the ledger's writer lock and seals the
hash chain; the deferred balance checks run at our COMMIT), this module
  1. inserts the sample under its idempotency key (a sample already stored means a retry: nothing else runs),
  2. locks the node's registry row and reads its baseline (the last charged sample),
  3. computes the usage between the two (``collector.charging.deltas``, pure) and, with the GPU queue on and a
     reservation price in the book, the reservation of the node's granted GPUs over the same interval (the
     leases read from ``control.leases`` in this transaction; ``collector.charging.reservation``, pure), and
     posts both with ``ledger.usage.post_ticks``, together with records an earlier tick could not charge
     (unknown user, missing price); the ledger skips memory and reservation records no price covers (both are
     optional to price: its rule),
  4. keeps what the ledger rejected in ``collector.usage_outbox``, records unaccounted gaps, and moves the
     baseline to this sample. Kept records are retried with later samples, except those dated in a period
     closed since (the ledger refuses them for good: ``PeriodClosed``); a kept record the ledger now skips
     leaves the outbox (the ledger will never store it).
A crash anywhere before COMMIT leaves nothing behind, and the next sample is charged against the old
baseline, so the usage is charged once; a crash after COMMIT is a retry of a stored sample: a no-op.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection

from collector.charging.deltas import Gap, UsageResult, UsageSettings, compute
from collector.charging.reservation import RESOURCE, reservation_records
from collector.charging.samples import Sample, sample_from_document
from collector.charging.to_ledger import interval, usage_records
from control import leases
from control.leases import Lease
from control.presence import ControlTable
from ledger import prices
from ledger.codec import record_from_document, record_json
from ledger.db import translated
from ledger.records import TickResult, UsageRecord, UsageTick
from ledger.usage import post_ticks

# Records an earlier tick could not charge are retried with each new sample, this many at a time.
RETRY_BATCH = 200


@dataclass(frozen=True)
class Fetched:
    """A sample as it arrived: the raw bytes (evidence), the parsed facts, and the controller's clock."""

    node: str
    raw: bytes
    sample: Sample
    received_at: datetime
    skew_ms: int
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Charged:
    """What charging one sample did."""

    node: str
    sample_id: int | None
    duplicate: bool = False
    records: int = 0
    entries: int = 0
    amount: int = 0
    users: frozenset[str] = frozenset()
    rejected: tuple[tuple[str, str], ...] = ()
    gaps: tuple[Gap, ...] = ()
    flags: tuple[str, ...] = ()


# Raw psycopg with binary (%b) parameters: text-format arrays would escape every quote of every payload
# character by character, which cost more CPU than everything else in a 1,000-node tick.
_INSERT_SAMPLES = """
    INSERT INTO collector.sample (idem_key, node, machine_id, boot_id, node_time, boottime_ns, received_at, skew_ms,
                                  flags, payload_sha256, payload)
    SELECT k, n, m, b, to_timestamp(w / 1e9), bt, r, sk, CAST(f AS text[]), h, CAST(p AS jsonb)
      FROM unnest(%(keys)b::text[], %(nodes)b::text[], %(machines)b::text[], %(boots)b::text[], %(walls)b::int8[],
                  %(boottimes)b::int8[], %(received)b::timestamptz[], %(skews)b::int8[], %(flags)b::text[],
                  %(shas)b::text[], %(payloads)b::text[])
           AS x(k, n, m, b, w, bt, r, sk, f, h, p)
    ON CONFLICT (idem_key) DO NOTHING
    RETURNING id, node
"""


@dataclass(frozen=True)
class _Prepared:
    fetched: Fetched
    sample_id: int
    result: UsageResult
    records: tuple[UsageRecord, ...]
    retry: tuple[UsageRecord, ...]


class Charger:
    """Charges samples; keeps each node's baseline in memory and checks it against the database."""

    def __init__(self, engine: Engine, currency: str, settings: UsageSettings, *, reservations: bool = False) -> None:
        """``reservations``: charge the queue's granted GPUs for held, unused time (the queue is on)."""
        self.engine = engine
        self.currency = currency
        self.settings = settings
        self._book = prices.PriceBook()
        self._leases = ControlTable(leases.TABLE, "no reservation is charged", recheck_s=300) if reservations else None
        self._baselines: dict[str, tuple[int, Sample]] = {}
        self._lock = threading.Lock()

    def charge(self, fetched: Fetched) -> Charged:
        """Charge one sample in its own transaction (see ``charge_many``)."""
        return self.charge_many([fetched])[0]

    def charge_many(self, batch: Sequence[Fetched]) -> list[Charged]:
        """Charge samples of different nodes in one transaction: each sample's evidence, records and entries
        commit together (with the others'), never apart. Raises ``ledger.errors.LedgerUnavailable`` when the
        database is away, and then nothing of the batch is written. Every step is one statement for the
        whole batch, so a batch costs a handful of round trips whatever its size."""
        by_node = {f.node: f for f in batch}
        if len(by_node) != len(batch):
            raise ValueError("a batch holds at most one sample per node")
        with translated(), self.engine.begin() as conn:
            stored = self._store(conn, batch)
            baselines: dict[str, int | None] = {
                row.name: row.charged_sample_id
                for row in conn.execute(
                    text("SELECT name, charged_sample_id FROM collector.node WHERE name = ANY(:n)"
                         " ORDER BY name FOR UPDATE"),
                    {"n": sorted(stored)},
                )
            }
            retries: dict[str, list[UsageRecord]] = defaultdict(list)
            for row in conn.execute(
                text(
                    "SELECT node, record FROM (SELECT node, record, row_number() OVER (PARTITION BY node"
                    " ORDER BY created_at, idem_key) AS n FROM collector.usage_outbox"
                    " WHERE node = ANY(:nodes) AND state <> 'posted'"
                    # A record of a closed period is refused for good (docs/ledger.md, "Period close"): kept and
                    # reported, but no longer retried, where it would take a retry slot from one that can be charged.
                    " AND CAST(record->>'interval_end' AS timestamptz)"
                    "     >= ledger.closed_before()"
                    ") AS o WHERE n <= :limit"
                ),
                {"nodes": sorted(stored), "limit": RETRY_BATCH},
            ):
                retries[row.node].append(record_from_document(row.record))
            results: dict[str, Charged] = {}
            computed: list[tuple[Fetched, int, UsageResult]] = []
            for node, sample_id in stored.items():
                fetched = by_node[node]
                result = compute(self._baseline(conn, node, baselines.get(node)), fetched.sample, self.settings)
                if not result.advance:
                    results[node] = Charged(node, sample_id, flags=fetched.flags + result.flags)
                    continue
                computed.append((fetched, sample_id, result))
            held = self._held(conn, computed)
            work: list[_Prepared] = []
            for fetched, sample_id, result in computed:
                node, sample, at = fetched.node, fetched.sample, fetched.received_at
                records = (usage_records(node, sample, result, at)
                           + reservation_records(node, sample, result, at, held.get(node, ())))
                work.append(_Prepared(fetched, sample_id, result, records, tuple(retries[node])))
            outcomes = post_ticks(conn, [UsageTick(p.fetched.node, p.records + p.retry) for p in work],
                                  self._book.current, self.currency) if work else []
            self._finish(conn, work, outcomes)
            for p, outcome in zip(work, outcomes, strict=True):
                results[p.fetched.node] = _charged(p, outcome)
        with self._lock:
            for p in work:
                self._baselines[p.fetched.node] = (p.sample_id, p.fetched.sample)
        return [results.get(f.node) or Charged(f.node, None, duplicate=True) for f in batch]

    def _held(self, conn: Connection, computed: Sequence[tuple[Fetched, int, UsageResult]]) -> dict[str, list[Lease]]:
        """node -> the leases overlapping its interval, read only when reservations are on, the queue's tables
        exist and the price book has a reservation price (no price: the charge is off, and nothing is read)."""
        if self._leases is None or not computed or not self._leases.present(conn):
            return {}
        if not any(v.resource == RESOURCE for v in self._book.current(conn)):
            return {}
        spans = [interval(result, fetched.received_at) for fetched, _, result in computed]
        found: dict[str, list[Lease]] = defaultdict(list)
        for lease in leases.overlapping(conn, sorted({f.node for f, _, _ in computed}),
                                        min(start for start, _ in spans), max(end for _, end in spans)):
            found[lease.node].append(lease)
        return found

    @staticmethod
    def _store(conn: Connection, batch: Sequence[Fetched]) -> dict[str, int]:
        """Insert the samples as evidence; node -> sample id for the ones not stored before (not retries)."""
        driver = conn.connection.driver_connection
        assert driver is not None, "charging runs on a live psycopg connection"
        rows = driver.execute(_INSERT_SAMPLES, {
            "keys": [f.sample.idem_key for f in batch], "nodes": [f.node for f in batch],
            "machines": [f.sample.machine_id or "" for f in batch], "boots": [f.sample.boot_id for f in batch],
            "walls": [f.sample.wall_time_ns for f in batch], "boottimes": [f.sample.boottime_ns for f in batch],
            "received": [f.received_at for f in batch], "skews": [f.skew_ms for f in batch],
            "flags": ["{" + ",".join(f.flags) + "}" for f in batch], "shas": [f.sample.sha256 for f in batch],
            "payloads": [f.raw.decode("utf-8") for f in batch],
        })
        return {node: sample_id for sample_id, node in rows}

    def _baseline(self, conn: Connection, node: str, sample_id: int | None) -> Sample | None:
        if sample_id is None:
            return None
        with self._lock:
            cached = self._baselines.get(node)
        if cached is not None and cached[0] == sample_id:
            return cached[1]
        row = conn.execute(
            text("SELECT payload, payload_sha256 FROM collector.sample WHERE id = :id"), {"id": sample_id}
        ).one_or_none()
        return None if row is None else sample_from_document(row.payload, row.payload_sha256)

    def _finish(self, conn: Connection, work: Sequence[_Prepared], outcomes: Sequence[TickResult]) -> None:
        """Keep what the ledger rejected, mark kept records it took, record gaps, move the baselines."""
        if not work:
            return
        rejected = [(p, r) for p, outcome in zip(work, outcomes, strict=True) for r in outcome.rejected]
        self._keep_rejected(conn, rejected)
        posted_retries = sorted(
            {r.idem_key for p in work for r in p.retry}
            & {o.idem_key for outcome in outcomes for o in outcome.posted}
        )
        if posted_retries:
            conn.execute(
                text("UPDATE collector.usage_outbox SET state = 'posted', posted_at = now(), error = NULL"
                     " WHERE idem_key = ANY(:keys)"),
                {"keys": posted_retries},
            )
        skipped_retries = sorted(
            {r.idem_key for p in work for r in p.retry}
            & {r.idem_key for outcome in outcomes for r in outcome.skipped}
        )
        if skipped_retries:
            conn.execute(text("DELETE FROM collector.usage_outbox WHERE idem_key = ANY(:keys)"),
                         {"keys": skipped_retries})
        self._record_gaps(conn, [(p.fetched.node, p.sample_id, gap) for p in work for gap in p.result.gaps])
        conn.execute(
            text(
                "UPDATE collector.node AS n SET charged_sample_id = x.id, updated_at = now()"
                " FROM unnest(CAST(:names AS text[]), CAST(:ids AS bigint[])) AS x(name, id) WHERE n.name = x.name"
            ),
            {"names": [p.fetched.node for p in work], "ids": [p.sample_id for p in work]},
        )

    @staticmethod
    def _keep_rejected(conn: Connection, rejected: Sequence[tuple[_Prepared, Any]]) -> None:
        if not rejected:
            return
        conn.execute(
            text(
                "INSERT INTO collector.usage_outbox (idem_key, node, sample_id, record, state, error, attempts)"
                " SELECT k, n, s, CAST(r AS jsonb), 'rejected', e, 1"
                " FROM unnest(CAST(:keys AS text[]), CAST(:nodes AS text[]), CAST(:samples AS bigint[]),"
                " CAST(:records AS text[]), CAST(:errors AS text[])) AS x(k, n, s, r, e)"
                " ON CONFLICT (idem_key) DO UPDATE SET state = 'rejected', error = EXCLUDED.error,"
                " attempts = collector.usage_outbox.attempts + 1"
            ),
            {
                "keys": [r.record.idem_key for _, r in rejected],
                "nodes": [p.fetched.node for p, _ in rejected],
                "samples": [p.sample_id for p, _ in rejected],
                "records": [record_json(r.record) for _, r in rejected],
                "errors": [f"{r.error.code}: {r.error.message}" for _, r in rejected],
            },
        )

    @staticmethod
    def _record_gaps(conn: Connection, gaps: Sequence[tuple[str, int, Gap]]) -> None:
        if not gaps:
            return
        conn.execute(
            text(
                "INSERT INTO collector.unaccounted (node, sample_id, reason, seconds, detail)"
                " SELECT n, s, r, sec, jsonb_build_object('detail', d)"
                " FROM unnest(CAST(:nodes AS text[]), CAST(:samples AS bigint[]), CAST(:reasons AS text[]),"
                " CAST(:seconds AS numeric[]), CAST(:details AS text[])) AS x(n, s, r, sec, d)"
            ),
            {
                "nodes": [g[0] for g in gaps], "samples": [g[1] for g in gaps], "reasons": [g[2].reason for g in gaps],
                "seconds": [g[2].seconds for g in gaps], "details": [g[2].detail for g in gaps],
            },
        )


def _charged(p: _Prepared, outcome: TickResult) -> Charged:
    skipped = {r.idem_key for r in outcome.skipped}
    return Charged(
        node=p.fetched.node,
        sample_id=p.sample_id,
        records=sum(1 for r in p.records if r.idem_key not in skipped),  # the sample's, less what the ledger skipped
        entries=sum(1 for o in outcome.posted if o.created and o.entry_id is not None),
        amount=sum(o.amount for o in outcome.posted if o.created),
        users=frozenset(o.user for o in outcome.posted),
        rejected=tuple((r.record.idem_key, r.error.code) for r in outcome.rejected),
        gaps=p.result.gaps,
        flags=p.fetched.flags + p.result.flags,
    )
