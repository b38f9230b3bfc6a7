"""One node sample -> evidence, usage records and ledger entries, in ONE database transaction.

In one transaction, which ``ledger.usage.post_ticks`` joins (it takes the ledger's writer lock and seals the
hash chain; the deferred balance checks run at our COMMIT), this module
  1. inserts the sample under its idempotency key (a sample already stored means a retry: nothing else runs),
  2. locks the node's registry row and reads its baseline (the last charged sample),
  3. computes the usage between the two (``collector.usage``, pure) and posts it with ``ledger.usage.post_tick``,
     together with records an earlier tick could not charge (unknown user, missing price),
  4. keeps what the ledger rejected in ``collector.usage_outbox``, records unaccounted gaps, and moves the
     baseline to this sample.
A crash anywhere before COMMIT leaves nothing behind, and the next sample is charged against the old
baseline, so the usage is charged once; a crash after COMMIT is a retry of a stored sample: a no-op.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection

from collector.records import usage_records
from collector.sample import Sample, sample_from_document
from collector.usage import Gap, UsageResult, UsageSettings, compute
from ledger import prices
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


_INSERT_SAMPLE = text(
    """
    INSERT INTO collector.sample (idem_key, node, machine_id, boot_id, node_time, boottime_ns, received_at, skew_ms,
                                  flags, payload_sha256, payload)
    VALUES (:key, :node, :machine, :boot, to_timestamp(:wall_ns / 1e9), :boottime, :received, :skew, :flags, :sha,
            CAST(:payload AS jsonb))
    ON CONFLICT (idem_key) DO NOTHING
    RETURNING id
    """
)


def _record_json(record: UsageRecord) -> str:
    body = {
        "idem_key": record.idem_key, "linux_user": record.linux_user, "resource": record.resource,
        "quantity": str(record.quantity), "unit": record.unit, "interval_start": record.interval_start.isoformat(),
        "interval_end": record.interval_end.isoformat(), "method": record.method, "epoch": record.epoch,
        "model": record.model, "evidence": dict(record.evidence),
    }
    return json.dumps(body, sort_keys=True)


def _record_from(body: dict[str, Any]) -> UsageRecord:
    return UsageRecord(
        idem_key=body["idem_key"], linux_user=body["linux_user"], resource=body["resource"],
        quantity=Decimal(body["quantity"]), unit=body["unit"],
        interval_start=datetime.fromisoformat(body["interval_start"]),
        interval_end=datetime.fromisoformat(body["interval_end"]), method=body["method"], epoch=body["epoch"],
        model=body["model"], evidence=body["evidence"],
    )


@dataclass(frozen=True)
class _Prepared:
    fetched: Fetched
    sample_id: int
    result: UsageResult
    records: tuple[UsageRecord, ...]
    retry: tuple[UsageRecord, ...]


class Charger:
    """Charges samples; keeps each node's baseline in memory and checks it against the database."""

    def __init__(self, engine: Engine, currency: str, settings: UsageSettings) -> None:
        self.engine = engine
        self.currency = currency
        self.settings = settings
        self._book = prices.PriceBook()
        self._baselines: dict[str, tuple[int, Sample]] = {}
        self._lock = threading.Lock()

    def charge(self, fetched: Fetched) -> Charged:
        """Charge one sample in its own transaction (see ``charge_many``)."""
        return self.charge_many([fetched])[0]

    def charge_many(self, batch: Sequence[Fetched]) -> list[Charged]:
        """Charge samples of different nodes in one transaction: each sample's evidence, records and entries
        commit together (with the others'), never apart. Raises ``ledger.errors.LedgerUnavailable`` when the
        database is away, and then nothing of the batch is written."""
        with translated(), self.engine.begin() as conn:
            prepared = [self._prepare(conn, fetched) for fetched in batch]
            work = [p for p in prepared if isinstance(p, _Prepared)]
            outcomes = post_ticks(conn, [UsageTick(p.fetched.node, p.records + p.retry) for p in work],
                                  self._book.current, self.currency) if work else []
            finished = {id(p): self._finish(conn, p, outcome) for p, outcome in zip(work, outcomes, strict=True)}
        with self._lock:
            for p in work:
                self._baselines[p.fetched.node] = (p.sample_id, p.fetched.sample)
        return [finished[id(p)] if isinstance(p, _Prepared) else p for p in prepared]

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

    def _prepare(self, conn: Connection, fetched: Fetched) -> Charged | _Prepared:
        """Store the sample, compute its usage against the baseline; a ``Charged`` when nothing is to post."""
        sample = fetched.sample
        sample_id = conn.execute(
            _INSERT_SAMPLE,
            {
                "key": sample.idem_key, "node": fetched.node, "machine": sample.machine_id or "",
                "boot": sample.boot_id, "wall_ns": sample.wall_time_ns, "boottime": sample.boottime_ns,
                "received": fetched.received_at, "skew": fetched.skew_ms, "flags": list(fetched.flags),
                "sha": sample.sha256, "payload": fetched.raw.decode("utf-8"),
            },
        ).scalar_one_or_none()
        if sample_id is None:
            return Charged(fetched.node, None, duplicate=True)
        baseline_id = conn.execute(
            text("SELECT charged_sample_id FROM collector.node WHERE name = :n FOR UPDATE"), {"n": fetched.node}
        ).scalar_one()
        result = compute(self._baseline(conn, fetched.node, baseline_id), sample, self.settings)
        if not result.advance:
            return Charged(fetched.node, sample_id, flags=fetched.flags + result.flags)
        retry = tuple(
            _record_from(row.record)
            for row in conn.execute(
                text(
                    "SELECT record FROM collector.usage_outbox WHERE node = :n AND state <> 'posted'"
                    " ORDER BY created_at, idem_key LIMIT :limit"
                ),
                {"n": fetched.node, "limit": RETRY_BATCH},
            )
        )
        records = usage_records(fetched.node, sample, result, fetched.received_at)
        return _Prepared(fetched, sample_id, result, records, retry)

    def _finish(self, conn: Connection, p: _Prepared, outcome: TickResult) -> Charged:
        """Keep what the ledger rejected, record gaps, and move the node's baseline to this sample."""
        node = p.fetched.node
        self._keep_rejected(conn, node, p.sample_id, outcome.rejected)
        posted_retries = {r.idem_key for r in p.retry} & {o.idem_key for o in outcome.posted}
        if posted_retries:
            conn.execute(
                text("UPDATE collector.usage_outbox SET state = 'posted', posted_at = now(), error = NULL"
                     " WHERE idem_key = ANY(:keys)"),
                {"keys": sorted(posted_retries)},
            )
        self._record_gaps(conn, node, p.sample_id, p.result.gaps)
        conn.execute(
            text("UPDATE collector.node SET charged_sample_id = :id, updated_at = now() WHERE name = :n"),
            {"id": p.sample_id, "n": node},
        )
        return Charged(
            node=node,
            sample_id=p.sample_id,
            records=len(p.records),
            entries=sum(1 for o in outcome.posted if o.created and o.entry_id is not None),
            amount=sum(o.amount for o in outcome.posted if o.created),
            users=frozenset(o.user for o in outcome.posted),
            rejected=tuple((r.record.idem_key, r.error.code) for r in outcome.rejected),
            gaps=p.result.gaps,
            flags=p.fetched.flags + p.result.flags,
        )

    @staticmethod
    def _keep_rejected(conn: Connection, node: str, sample_id: int, rejected: Sequence[Any]) -> None:
        if not rejected:
            return
        conn.execute(
            text(
                "INSERT INTO collector.usage_outbox (idem_key, node, sample_id, record, state, error, attempts)"
                " SELECT k, :node, :sid, CAST(r AS jsonb), 'rejected', e, 1"
                " FROM unnest(CAST(:keys AS text[]), CAST(:records AS text[]), CAST(:errors AS text[])) AS x(k, r, e)"
                " ON CONFLICT (idem_key) DO UPDATE SET state = 'rejected', error = EXCLUDED.error,"
                " attempts = collector.usage_outbox.attempts + 1"
            ),
            {
                "node": node, "sid": sample_id,
                "keys": [r.record.idem_key for r in rejected],
                "records": [_record_json(r.record) for r in rejected],
                "errors": [f"{r.error.code}: {r.error.message}" for r in rejected],
            },
        )

    @staticmethod
    def _record_gaps(conn: Connection, node: str, sample_id: int, gaps: Sequence[Gap]) -> None:
        for gap in gaps:
            conn.execute(
                text("INSERT INTO collector.unaccounted (node, sample_id, reason, seconds, detail)"
                     " VALUES (:n, :s, :r, :sec, CAST(:d AS jsonb))"),
                {"n": node, "s": sample_id, "r": gap.reason, "sec": gap.seconds,
                 "d": json.dumps({"detail": gap.detail})},
            )
