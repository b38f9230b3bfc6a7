"""Operations that arrive more than once (``control.queue_op``, migration control0008).

A node serves every drop-box entry it handed over again until the controller acknowledges it, which it does
only after the tick's transaction committed (probe/holding.py): a controller killed in between, or an
acknowledgement lost on the way, means the next tick reads the same operation again. Each (user, nonce) is
applied once: ``seen`` finds the first application's outcome, ``record`` stores it in the same transaction as
its effect. The queue's lock (``store.lock``, held by the tick) keeps the look-up and the insert together.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.engine import Connection

# Longer than a node holds an entry (probe.holding.MAX_HELD_AGE_S, a day), with room for the node's clock being
# behind the controller's, so a replay always finds its row.
KEEP = timedelta(days=7)


@dataclass(frozen=True)
class Seen:
    """What the first application of an operation said, and the request it filed or named (None: none)."""

    outcome: str
    request_id: int | None


def seen(conn: Connection, user: str, nonce: str) -> Seen | None:
    row = conn.execute(text("SELECT outcome, request_id FROM control.queue_op WHERE billing_user = :u AND nonce = :n"),
                       {"u": user, "n": nonce}).one_or_none()
    return None if row is None else Seen(row.outcome, None if row.request_id is None else int(row.request_id))


def record(conn: Connection, user: str, nonce: str, op: str, first: Seen, *, now: datetime) -> None:
    """Store the first application; a second one for the same (user, nonce) is a primary-key error, never a row."""
    conn.execute(text(
        "INSERT INTO control.queue_op (billing_user, nonce, op, request_id, outcome, at)"
        " VALUES (:u, :n, :op, :rid, :outcome, :now)"),
        {"u": user, "n": nonce, "op": op, "rid": first.request_id, "outcome": first.outcome[:200], "now": now})


def forget(conn: Connection, *, now: datetime) -> None:
    """Delete the rows older than ``KEEP``."""
    conn.execute(text("DELETE FROM control.queue_op WHERE at < :cutoff"), {"cutoff": now - KEEP})
