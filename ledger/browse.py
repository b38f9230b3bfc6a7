"""Read-only listings for browsing the ledger (usage rows and journal entries, filtered and cursor-paged), the
API's GET /v1/usage and /v1/entries. They live here so that only the ledger's SQL names its tables
(tests/test_tooling.py). Cursors are the last id seen: ids are in commit order and never reused, so a page never
skips or repeats a row."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from ledger.money import format_amount

_USAGE_FILTERS = {
    "user": "b.name = :user",
    "node": "u.node = :node",
    "model": "u.model = :model",
    "resource": "u.resource = :resource",
    "start": "u.interval_end >= :start",
    "end": "u.interval_end < :end",
}


def usage_page(conn: Connection, filters: Mapping[str, Any], after: int, limit: int,
               with_evidence: bool) -> tuple[list[dict[str, Any]], int | None]:
    """Usage rows with id > ``after`` matching ``filters`` (None values ignored), and the next cursor."""
    used = {k: v for k, v in filters.items() if v is not None}
    where = " AND ".join(["u.id > :after", *(_USAGE_FILTERS[k] for k in used)])
    # The page is cut before the journal join, so only its own rows look up their entry.
    rows = conn.execute(text(
        "SELECT p.*, j.id FROM ("  # noqa: S608 (constant column lists and clauses)
        "  SELECT u.id, u.node, u.linux_user, b.name, u.resource, u.model, u.quantity, u.unit, u.interval_start,"
        "   u.interval_end, u.method, u.amount, u.price_version_id, u.evidence"
        "  FROM ledger.usage u JOIN ledger.billing_user b ON b.id = u.user_id"
        f"  WHERE {where} ORDER BY u.id LIMIT :limit) p"
        " LEFT JOIN ledger.journal_entry j ON j.usage_id = p.id ORDER BY p.id"),
        {**used, "after": after, "limit": limit + 1}).all()
    items = [{"id": r[0], "node": r[1], "linux_user": r[2], "user": r[3], "resource": r[4], "model": r[5],
              "quantity": str(r[6]), "unit": r[7], "interval_start": r[8].isoformat(),
              "interval_end": r[9].isoformat(), "method": r[10], "amount": format_amount(r[11]),
              "price_version_id": r[12], "entry_id": r[14], **({"evidence": r[13]} if with_evidence else {})}
             for r in rows[:limit]]
    return items, (int(rows[limit - 1][0]) if len(rows) > limit else None)


def entries_page(conn: Connection, kind: str | None, start: datetime | None, end: datetime | None, after: int,
                 limit: int) -> tuple[list[dict[str, Any]], int | None]:
    """Journal entries with their postings, id > ``after``, optionally of one kind and effective in a range."""
    clauses = ["e.id > :after"]
    clauses += ["e.kind = :kind"] if kind else []
    clauses += ["e.effective_at >= :start"] if start else []
    clauses += ["e.effective_at < :end"] if end else []
    rows = conn.execute(text(
        "SELECT e.id, e.kind, e.idem_key, encode(e.payload_sha256, 'hex'), e.effective_at, e.recorded_at, e.actor,"  # noqa: S608 (constant column lists and clauses)
        " e.memo, e.ref_entry_id, e.usage_id FROM ledger.journal_entry e"
        f" WHERE {' AND '.join(clauses)} ORDER BY e.id LIMIT :limit"),
        {"after": after, "kind": kind, "start": start, "end": end, "limit": limit + 1}).all()
    page = rows[:limit]
    postings: dict[int, list[dict[str, Any]]] = {r[0]: [] for r in page}
    if page:
        for entry_id, account, amount in conn.execute(text(
                "SELECT p.entry_id, a.code, p.amount FROM ledger.posting p JOIN ledger.account a ON a.id = p.account_id"
                " WHERE p.entry_id = ANY(:ids) ORDER BY p.entry_id, p.line"), {"ids": list(postings)}):
            postings[entry_id].append({"account": account, "amount": format_amount(amount)})
    items = [{"id": r[0], "kind": r[1], "idem_key": r[2], "payload_sha256": r[3], "effective_at": r[4].isoformat(),
              "recorded_at": r[5].isoformat(), "actor": r[6], "memo": r[7], "ref_entry_id": r[8], "usage_id": r[9],
              "postings": postings[r[0]]} for r in page]
    return items, (int(page[-1][0]) if len(rows) > limit else None)
