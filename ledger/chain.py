"""The hash chain, recomputed in Python independently of the SQL that sealed it (ledger.seal_block).

An entry's canonical text is its fields, each length-prefixed (``len:value``, ``~`` for NULL), joined by
``|``; its postings follow as ``line code amount`` triples joined by ``;``. A block's hash is
``sha256(previous block hash || its entries' texts joined by newlines)``, the first block's previous hash
being one zero byte.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection, Result

from ledger.errors import LedgerError
from ledger.records import ChainHead

GENESIS = b"\x00"

_ENTRIES_SQL = """
SELECT e.id, e.idem_key, e.payload_sha256, e.kind, e.effective_at, e.recorded_at, e.ref_entry_id, e.usage_id,
       e.actor, e.memo, u.payload_sha256 AS usage_sha, u.price_version_id, u.cumulative_quantity, u.amount,
       u.account_id, g.expires_at AS grant_expires_at,
       (SELECT array_agg(ARRAY[p.line::text, a.code, p.amount::text] ORDER BY p.line)
          FROM ledger.posting p JOIN ledger.account a ON a.id = p.account_id WHERE p.entry_id = e.id) AS postings
  FROM ledger.journal_entry e LEFT JOIN ledger.usage u ON u.id = e.usage_id
  LEFT JOIN ledger.grant_account g ON g.entry_id = e.id
 ORDER BY e.id
"""


def field(value: str | None) -> str:
    return "~" if value is None else f"{len(value)}:{value}"


def _utc(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def canonical_entry(row: Any) -> str:
    parts = [field(_text(v)) for v in (row.id, row.idem_key, row.payload_sha256, row.kind)]
    parts += [field(_utc(row.effective_at)), field(_utc(row.recorded_at))]
    parts += [field(_text(v)) for v in (row.ref_entry_id, row.usage_id, row.actor, row.memo, row.usage_sha,
                                         row.price_version_id, row.cumulative_quantity, row.amount, row.account_id)]
    if row.postings:
        parts.append(";".join("".join(field(x) for x in p) for p in row.postings))
    return "|".join(parts)


def block_hash(prev: bytes, texts: Iterable[str]) -> bytes:
    return hashlib.sha256(prev + "\n".join(texts).encode("utf-8")).digest()


@dataclass(frozen=True)
class Block:
    seq: int
    first_entry_id: int
    last_entry_id: int
    entry_count: int
    prev_hash: bytes
    block_hash: bytes


def block(row: Any) -> Block:
    return Block(int(row.seq), int(row.first_entry_id), int(row.last_entry_id), int(row.entry_count),
                 bytes(row.prev_hash), bytes(row.block_hash))


def blocks(conn: Connection) -> Result[Any]:
    """Every block in order, streamed; the caller closes the result (``with``)."""
    return conn.execution_options(yield_per=1000).execute(text(
        "SELECT seq, first_entry_id, last_entry_id, entry_count, prev_hash, block_hash FROM ledger.chain_block"
        " ORDER BY seq"))


def head(conn: Connection) -> ChainHead | None:
    """The newest block: what exports carry and what ``audit verify --anchor`` compares later."""
    row = conn.execute(text("SELECT seq, block_hash FROM ledger.chain_block ORDER BY seq DESC LIMIT 1")).first()
    return None if row is None else ChainHead(int(row.seq), bytes(row.block_hash).hex())


def entries(conn: Connection) -> Result[Any]:
    """Every entry in id order with what its canonical text and its payload hash need (a grant's expiry is in
    the payload, not in the text), streamed; the caller closes the result."""
    return conn.execution_options(yield_per=1000).execute(text(_ENTRIES_SQL))


@dataclass(frozen=True)
class Anchor:
    """A chain head saved earlier, away from the database (an export's header, a line of the controller's
    anchor file), and where it was found: ``audit verify`` checks that the chain still has it."""

    seq: int
    sha256: str
    source: str


_ANCHOR_LINE = re.compile(r"(\S+) ([0-9]+) ([0-9a-f]{64})")


def anchor_line(head: ChainHead, at: datetime) -> str:
    """One line of an anchor file, ``<UTC time> <seq> <sha256>`` (the controller appends one per new head)."""
    return f"{_utc(at)} {head.seq} {head.sha256}"


def read_anchors(path: Path) -> list[Anchor]:
    """Every anchor line of ``path`` (blank lines and ``#`` comments skipped); anything else is a LedgerError
    naming the line, as is a file that cannot be read."""
    anchors = []
    try:
        with path.open(encoding="utf-8") as lines:
            for n, line in enumerate(lines, start=1):
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                match = _ANCHOR_LINE.fullmatch(line.strip())
                if match is None:
                    raise LedgerError(f"{path}:{n} is not an anchor line (<time> <seq> <sha256>):"
                                      f" {line.strip()[:100]!r}", file=str(path), line=n)
                anchors.append(Anchor(int(match[2]), match[3], f"{path}:{n} ({match[1]})"))
    except (OSError, UnicodeDecodeError) as exc:
        raise LedgerError(f"cannot read the anchor file {path}: {exc}", file=str(path)) from exc
    return anchors
