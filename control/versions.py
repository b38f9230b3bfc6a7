"""Settings versions, the store (docs/api.md, "Settings"): each change is a new row of
``control.settings_version`` with its reason; the newest is the one in force. What a document means is
``control.settings``; this module only keeps and finds them."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

# Serialises changes, so each version is computed from the one before it. Any constant works that no other
# advisory lock of ours uses (ledger.db's writer lock, ledger.migrate's migration lock).
_CHANGE_LOCK = 0x676C6173
_COLUMNS = "id, settings, reason, actor, at"


@dataclass(frozen=True)
class Version:
    """One stored version. ``settings`` is the document as stored: normally an object that
    ``control.settings.parse`` accepts, but a row written before that rule may hold anything JSON can."""

    id: int
    settings: Any
    reason: str
    actor: str
    at: datetime


def _version(row: Sequence[Any]) -> Version:
    return Version(id=int(row[0]), settings=row[1], reason=str(row[2]), actor=str(row[3]), at=row[4])


def newest(conn: Connection) -> Version | None:
    """The version in force, or None before the first."""
    row = conn.execute(text(f"SELECT {_COLUMNS} FROM control.settings_version"  # noqa: S608 (constant column list)
                            " ORDER BY id DESC LIMIT 1")).one_or_none()
    return None if row is None else _version(row)


def history(conn: Connection, limit: int = 500) -> list[Version]:
    """The newest ``limit`` versions, newest first."""
    rows = conn.execute(text(f"SELECT {_COLUMNS} FROM control.settings_version"  # noqa: S608 (constant column list)
                             " ORDER BY id DESC LIMIT :n"), {"n": limit})
    return [_version(r) for r in rows]


def lock_for_change(conn: Connection) -> None:
    """Take the change lock for the rest of the transaction: call it before reading the version a new one is
    computed from."""
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _CHANGE_LOCK})


def append(conn: Connection, document: Mapping[str, Any], reason: str, actor: str) -> Version:
    """Store ``document`` (already parsed and merged) as the newest version."""
    row = conn.execute(text("INSERT INTO control.settings_version (settings, reason, actor)"  # noqa: S608 (constant column list)
                            f" VALUES (CAST(:s AS jsonb), :r, :a) RETURNING {_COLUMNS}"),
                       {"s": json.dumps(dict(document)), "r": reason, "a": actor}).one()
    return _version(row)
