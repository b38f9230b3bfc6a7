"""A ``UsageRecord`` as JSON: the one codec, in two shapes built from the same facts.

* The hashed shape, ``usage_payload(node, record)``: what a usage row's ``payload_sha256`` (its idempotency
  hash, re-hashed by ``audit verify``) stands for: the record's facts and the node, not its key (the key is what
  the hash is looked up by). It must never change: stored hashes depend on it.
* The record document, ``record_document(record)``: the record as a whole, for whoever keeps records to post
  later (the collector's outbox, ``collector.usage_outbox.record``): the same facts plus ``idem_key``, and no
  node (the keeper stores the node beside it). ``record_from_document`` reads it back.

Both write the facts in the same text forms (``journal.plain``: a quantity as plain decimal text, times as UTC
ISO 8601), so a record read back from its document hashes exactly as the original did: a retry from the outbox
is the same record to the ledger, never an idempotency conflict. ``record_from_document`` also reads documents
written before this codec (quantities as ``str(Decimal)``, times with their original offset): the same values.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from ledger import journal
from ledger.records import UsageRecord


def _facts(r: UsageRecord) -> dict[str, Any]:
    return {
        "linux_user": r.linux_user, "resource": r.resource, "model": r.model, "quantity": journal.plain(r.quantity),
        "unit": r.unit, "interval_start": journal.plain(r.interval_start),
        "interval_end": journal.plain(r.interval_end), "method": r.method, "evidence": dict(r.evidence),
        "epoch": r.epoch,
    }


def usage_payload(node: str, r: UsageRecord) -> dict[str, Any]:
    """The facts of a record that its idempotency key stands for (what ``audit verify`` re-hashes)."""
    return {"node": node, **_facts(r)}


def record_document(r: UsageRecord) -> dict[str, Any]:
    """The record as JSON data: its facts (as ``usage_payload`` writes them) and its key."""
    return {"idem_key": r.idem_key, **_facts(r)}


def record_json(r: UsageRecord) -> str:
    """``record_document`` as canonical JSON text (sorted keys, no spaces: one text per record)."""
    return journal.canonical_json(record_document(r))


def record_from_document(doc: Mapping[str, Any]) -> UsageRecord:
    """The record ``record_document`` (or the outbox before it) wrote."""
    return UsageRecord(
        idem_key=doc["idem_key"], linux_user=doc["linux_user"], resource=doc["resource"],
        quantity=Decimal(doc["quantity"]), unit=doc["unit"],
        interval_start=datetime.fromisoformat(doc["interval_start"]),
        interval_end=datetime.fromisoformat(doc["interval_end"]), method=doc["method"], epoch=doc["epoch"],
        model=doc["model"], evidence=doc["evidence"],
    )
