"""The price book: dated, append-only price versions, and a cache that reloads only when a version is added."""

from __future__ import annotations

import threading
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from ledger.errors import InvalidPrice
from ledger.records import BY_MODEL, UNITS, PriceVersion
from ledger.text import check_text

_COLUMNS = "id, resource, model_pattern, match, priority, amount, per, unit, valid_from, actor, memo"


def _version(row: Any) -> PriceVersion:
    return PriceVersion(
        id=int(row.id), resource=row.resource, model_pattern=row.model_pattern, match=row.match,
        priority=int(row.priority), amount=Decimal(row.amount), per=Decimal(row.per), unit=row.unit,
        valid_from=row.valid_from, actor=row.actor, memo=row.memo,
    )


def load(conn: Connection) -> tuple[PriceVersion, ...]:
    rows = conn.execute(text(f"SELECT {_COLUMNS} FROM ledger.price_version ORDER BY id"))  # noqa: S608
    return tuple(_version(r) for r in rows)


def check_version(resource: str, amount: Decimal, per: Decimal, model_pattern: str, match: str) -> None:
    """InvalidPrice unless the parts make a valid version (the table's CHECKs, with readable messages)."""
    if resource not in UNITS:
        raise InvalidPrice(f"resource must be one of {sorted(UNITS)}, got {resource!r}")
    if match not in ("exact", "glob"):
        raise InvalidPrice(f"match must be exact or glob, got {match!r}")
    if (resource in BY_MODEL) != bool(model_pattern):
        raise InvalidPrice("a GPU or reservation price needs a model pattern; CPU and memory prices take none")
    if not amount.is_finite() or amount < 0:
        raise InvalidPrice(f"amount must be >= 0, got {amount}")
    if not per.is_finite() or per <= 0:
        raise InvalidPrice(f"per must be > 0, got {per}")


def insert(conn: Connection, *, resource: str, amount: Decimal, per: Decimal, model_pattern: str, match: str,
           priority: int, valid_from: datetime, actor: str, memo: str) -> PriceVersion:
    check_version(resource, amount, per, model_pattern, match)
    for field, value in (("model_pattern", model_pattern), ("memo", memo), ("actor", actor)):
        check_text(field, value)
    row = conn.execute(
        text(f"INSERT INTO ledger.price_version (resource, model_pattern, match, priority, amount, per, unit,"  # noqa: S608
             f" valid_from, actor, memo) VALUES (:resource, :pattern, :match, :priority, :amount, :per, :unit,"
             f" :valid_from, :actor, :memo) RETURNING {_COLUMNS}"),
        {"resource": resource, "pattern": model_pattern, "match": match, "priority": priority, "amount": amount,
         "per": per, "unit": UNITS[resource], "valid_from": valid_from, "actor": actor, "memo": memo},
    ).one()
    return _version(row)


class PriceBook:
    """All price versions, reloaded when the table's newest id changes (versions are never edited, so the
    newest id identifies the whole set). Shared by threads; reads are consistent snapshots."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._versions: tuple[PriceVersion, ...] = ()
        self._stamp: int | None = None

    def current(self, conn: Connection, stamp: int | None = None) -> tuple[PriceVersion, ...]:
        """The versions as of ``conn``'s snapshot; ``stamp`` is the newest version id if the caller already
        read it (the usage path reads it in the same round trip as everything else)."""
        if stamp is None:
            stamp = conn.execute(text("SELECT coalesce(max(id), 0) FROM ledger.price_version")).scalar_one()
        with self._lock:
            if stamp == self._stamp:
                return self._versions
        versions = load(conn)
        with self._lock:
            self._versions, self._stamp = versions, (versions[-1].id if versions else 0)
            return versions
