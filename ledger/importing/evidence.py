"""Reading the imported history back: a billing user's "before cutover" lines, the old system's usage and
recharges as they were recorded there (never charged here; the money came over as the opening balance)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.engine import Connection

from ledger.directory import get_user

_LINES = text("""
SELECT r.source, u.at, 'usage' AS kind, u.node, u.linux_user, array_to_string(u.gpu_models, ', ') AS gpus,
       u.cpu_percent, u.cost AS amount
  FROM ledger.imported_usage u JOIN ledger.import_run r ON r.id = u.run_id
 WHERE u.user_id = :user AND u.at >= :start AND u.at < :end
UNION ALL
SELECT r.source, c.at, 'recharge', '', '', '', NULL, c.amount
  FROM ledger.imported_recharge c JOIN ledger.import_run r ON r.id = c.run_id
 WHERE c.user_id = :user AND c.at >= :start AND c.at < :end
 ORDER BY at, kind, node, linux_user
""")


@dataclass(frozen=True)
class BeforeCutover:
    source: str
    at: datetime
    kind: str            # usage (amount: what the old system recorded as its cost) or recharge
    node: str
    linux_user: str
    gpus: str
    cpu_percent: str | None
    amount: int          # micro-units


def lines(conn: Connection, user: str, start: datetime, end: datetime) -> list[BeforeCutover]:
    """``user``'s imported lines with ``start <= at < end``, oldest first."""
    found = get_user(conn, user)
    return [BeforeCutover(r.source, r.at, r.kind, r.node, r.linux_user, r.gpus, r.cpu_percent, int(r.amount))
            for r in conn.execute(_LINES, {"user": found.id, "start": start, "end": end})]
