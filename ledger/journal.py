"""Journal entries: drafts, their invariants as data, their payload hash, and the idempotent post.

Callers run :func:`post` inside ``ledger.db.writing`` (the writer lock is held, so looking a key up and
then inserting it cannot race with another writer; the unique index is the database's backstop).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.engine import Connection

from ledger.errors import IdempotencyConflict, LedgerError, UnknownEntry
from ledger.money import MAX_MICRO
from ledger.records import ENTRY_KINDS, Entry, PostingLine, PostResult
from ledger.text import check_text


@dataclass(frozen=True)
class Draft:
    """An entry to post. ``facts`` is extra content that belongs in the payload hash (for example the
    usage record's hash, or an explicit effective date)."""

    kind: str
    idem_key: str
    effective_at: datetime
    postings: tuple[PostingLine, ...]
    actor: str
    memo: str = ""
    ref_entry_id: int | None = None
    usage_id: int | None = None
    request_id: str | None = None
    facts: Mapping[str, Any] = field(default_factory=dict)


def validate(draft: Draft) -> list[str]:
    """Everything wrong with ``draft`` (empty when it may be posted). The database checks the same again."""
    problems = []
    if draft.kind not in ENTRY_KINDS:
        problems.append(f"unknown kind {draft.kind!r}")
    if not draft.idem_key:
        problems.append("empty idempotency key")
    if not draft.actor:
        problems.append("empty actor")
    if draft.effective_at.tzinfo is None:
        problems.append("effective_at has no time zone")
    if len(draft.postings) < 2:
        problems.append(f"{len(draft.postings)} postings (at least 2 needed)")
    if any(p.amount == 0 for p in draft.postings):
        problems.append("a posting of zero")
    if any(abs(p.amount) > MAX_MICRO for p in draft.postings):
        problems.append("a posting out of range")
    if sum(p.amount for p in draft.postings) != 0:
        problems.append(f"postings sum to {sum(p.amount for p in draft.postings)}, not 0")
    return problems


def plain(value: Any) -> Any:
    """A Decimal or datetime as canonical_json writes it (callers on the hot path convert before dumping:
    json's ``default`` hook is a Python call per value)."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return _utc_iso(value) if value.tzinfo is not None else value.astimezone(UTC).isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON data")


# A node's tick writes the same two interval times into each of its records, several times each (hash and row):
# tens of thousands of conversions a tick for a few thousand distinct instants. Equal aware datetimes are the
# same instant, so they share one UTC text.
@functools.lru_cache(maxsize=8192)
def _utc_iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


# One encoder for every call: json.dumps with options builds a new one each time, about a fifth of the time it
# takes to encode a usage record's payload (the tick path encodes two per record, 32,000 a 1,000-node tick).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=plain)


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces; Decimal as plain text, datetime as UTC ISO 8601 (TypeError on
    anything else that JSON cannot carry)."""
    return _CANONICAL.encode(value)


def sha256_of(payload: Mapping[str, Any]) -> bytes:
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).digest()


def payload(kind: str, postings: Iterable[tuple[str, int]], ref_entry_id: int | None,
            facts: Mapping[str, Any]) -> dict[str, Any]:
    """What makes two posts "the same": kind, postings (account code, amount), referenced entry and facts; not
    memo, actor or time. The tick path hashes it without building a Draft (ledger.tickplan.entry_sha256)."""
    return {"kind": kind, "postings": [[account, amount] for account, amount in postings], "ref": ref_entry_id,
            "facts": dict(facts)}


def payload_sha256(draft: Draft) -> bytes:
    return sha256_of(payload(draft.kind, ((p.account, p.amount) for p in draft.postings), draft.ref_entry_id,
                             draft.facts))


def account_ids(conn: Connection, codes: Sequence[str]) -> dict[str, int]:
    rows = conn.execute(
        text("SELECT code, id FROM ledger.account WHERE code IN :codes").bindparams(bindparam("codes", expanding=True)),
        {"codes": sorted(set(codes))},
    )
    return {code: int(id_) for code, id_ in rows}


def post(conn: Connection, draft: Draft) -> PostResult:
    """Post ``draft`` once: an identical earlier post is returned unchanged; a different one under the same
    key raises IdempotencyConflict. Accounts must exist. Raises LedgerError when the draft is invalid."""
    check_text("memo", draft.memo)
    check_text("actor", draft.actor)
    problems = validate(draft)
    if problems:
        raise LedgerError(f"entry {draft.idem_key!r} is invalid: " + "; ".join(problems), problems=problems)
    digest = payload_sha256(draft)
    existing = conn.execute(
        text("SELECT id, payload_sha256 FROM ledger.journal_entry WHERE idem_key = :k"), {"k": draft.idem_key}
    ).first()
    if existing is not None:
        if bytes(existing.payload_sha256) != digest:
            raise IdempotencyConflict(draft.idem_key, bytes(existing.payload_sha256).hex(), digest.hex())
        return PostResult(load_entry(conn, int(existing.id)), created=False)
    ids = account_ids(conn, [p.account for p in draft.postings])
    missing = sorted({p.account for p in draft.postings} - ids.keys())
    if missing:
        raise LedgerError(f"unknown accounts {missing}", accounts=missing)
    entry_id = int(conn.execute(
        text(
            "INSERT INTO ledger.journal_entry (idem_key, payload_sha256, kind, effective_at, ref_entry_id,"
            " usage_id, actor, memo, request_id) VALUES (:k, :h, :kind, :eff, :ref, :usage, :actor, :memo, :rid)"
            " RETURNING id"
        ),
        {"k": draft.idem_key, "h": digest, "kind": draft.kind, "eff": draft.effective_at, "ref": draft.ref_entry_id,
         "usage": draft.usage_id, "actor": draft.actor, "memo": draft.memo, "rid": draft.request_id},
    ).scalar_one())
    conn.execute(
        text("INSERT INTO ledger.posting (entry_id, line, account_id, amount, effective_at)"
             " VALUES (:e, :line, :a, :amount, :eff)"),
        [{"e": entry_id, "line": n, "a": ids[p.account], "amount": p.amount, "eff": draft.effective_at}
         for n, p in enumerate(draft.postings, start=1)],
    )
    return PostResult(load_entry(conn, entry_id), created=True)


def load_entry(conn: Connection, entry_id: int) -> Entry:
    row = conn.execute(
        text("SELECT id, kind, idem_key, payload_sha256, effective_at, recorded_at, actor, memo, ref_entry_id,"
             " usage_id FROM ledger.journal_entry WHERE id = :id"),
        {"id": entry_id},
    ).first()
    if row is None:
        raise UnknownEntry(entry_id)
    postings = conn.execute(
        text("SELECT a.code, p.amount FROM ledger.posting p JOIN ledger.account a ON a.id = p.account_id"
             " WHERE p.entry_id = :id ORDER BY p.line"),
        {"id": entry_id},
    )
    return Entry(
        id=int(row.id), kind=row.kind, idem_key=row.idem_key, payload_sha256=bytes(row.payload_sha256).hex(),
        effective_at=row.effective_at, recorded_at=row.recorded_at, actor=row.actor, memo=row.memo,
        ref_entry_id=row.ref_entry_id, usage_id=row.usage_id,
        postings=tuple(PostingLine(code, int(amount)) for code, amount in postings),
    )
