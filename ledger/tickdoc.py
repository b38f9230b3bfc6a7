"""The document the tick path sends to the SQL function ``ledger.post_usage`` (migration 0006, whose
``COMMENT ON FUNCTION`` describes the same shape): one named contract on both sides.

Keys are the names of the columns they fill. Numbers and times travel as JSON text where exactness matters
(quantities as plain decimal text, times as UTC ISO 8601: ``journal.plain``), ids and micro-unit amounts as
JSON integers, hashes as lower-case hex.
"""

from __future__ import annotations

import json
from typing import Any, TypedDict

from ledger import journal


class DocumentUsage(TypedDict):
    """One ``ledger.usage`` row, and what its entry needs."""

    idem_key: str
    payload_sha256: str        # hex of the record's hash (ledger.codec.usage_payload)
    node: str
    linux_user: str
    user_id: int
    account_id: int            # the wallet charged
    resource: str
    model: str
    quantity: str
    unit: str
    interval_start: str
    interval_end: str          # also the entry's effective_at
    method: str
    evidence: dict[str, Any]
    epoch: str
    price_version_id: int
    cumulative_quantity: str
    amount: int                # micro-units; 0: no entry
    entry_sha256: str          # hex of the entry's payload hash; "" when amount is 0
    actor: str
    memo: str                  # the entry's memo ("reservation" for a held GPU's charge; migration 0011)


class DocumentPosting(TypedDict):
    """One posting of the entry of the usage row ``idem_key``."""

    idem_key: str
    line: int
    account_id: int
    amount: int                # micro-units, debit positive


class PostUsageDocument(TypedDict):
    """What the client read (``ledger.post_usage`` writes nothing when any of it moved) and what to write."""

    price_stamp: int           # newest price version id the rows were rated with
    usage_mark: int            # newest ledger.usage id the client read
    entry_mark: int            # newest ledger.journal_entry id the client read
    closed_before: str | None  # the newest period close the client read
    entry_key_prefix: str      # a charged row's entry key is this + its idem_key
    usage: list[DocumentUsage]
    postings: list[DocumentPosting]


def encode(doc: PostUsageDocument) -> str:
    """The JSON text ``ledger.post_usage`` gets (UTF-8 as it is: evidence may carry any text). Evidence is the
    caller's JSON data; a Decimal or datetime in it is written as the record's hash wrote it (``journal.plain``)."""
    return json.dumps(doc, ensure_ascii=False, default=journal.plain)
