"""Period close: a closed period never changes (migration 0005 holds it; docs/ledger.md, "Period close").

Closing is the owner role's act, so :func:`close` connects with the admin URL (``GPULEDGER_ADMIN_DATABASE_URL``,
a role that may ``SET ROLE gpuledger_owner``); the app role reads the closes but can neither make nor undo one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from ledger.db import translated
from ledger.migrate import OWNER_ROLE
from ledger.records import ChainHead

_COLUMNS = "id, through_day, time_zone, closed_before, head_seq, head_sha256, actor, reason, at"


@dataclass(frozen=True)
class PeriodClose:
    """Everything up to ``through`` (a local day in ``time_zone``) is closed: nothing may be dated before
    ``closed_before``. ``head`` is the chain head when it closed (None: the chain was empty)."""

    id: int
    through: date
    time_zone: str
    closed_before: datetime
    head: ChainHead | None
    actor: str
    reason: str
    at: datetime


def _close(row: Any) -> PeriodClose:
    head = None if row.head_seq is None else ChainHead(int(row.head_seq), bytes(row.head_sha256).hex())
    return PeriodClose(int(row.id), row.through_day, row.time_zone, row.closed_before, head, row.actor, row.reason,
                       row.at)


def close(admin_url: str, through: date, tz: ZoneInfo, *, actor: str, reason: str) -> PeriodClose:
    """Close every day up to ``through`` (local to ``tz``). Raises InvalidClose (not over yet, not after the
    last close, no reason) with the database's words."""
    engine = create_engine(admin_url, poolclass=NullPool)
    try:
        with translated(), engine.begin() as conn:
            conn.execute(text(f"SET LOCAL ROLE {OWNER_ROLE}"))
            row = conn.execute(text(f"SELECT {_COLUMNS} FROM ledger.close_period(:d, :tz, :actor, :reason)"),  # noqa: S608
                               {"d": through, "tz": tz.key, "actor": actor, "reason": reason}).one()
            return _close(row)
    finally:
        engine.dispose()


def closes(conn: Connection) -> list[PeriodClose]:
    """Every close, oldest first."""
    return [_close(r) for r in conn.execute(text(f"SELECT {_COLUMNS} FROM ledger.period_close ORDER BY id"))]  # noqa: S608
