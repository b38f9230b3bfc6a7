"""One active controller per database: a PostgreSQL session-level advisory lock on a dedicated connection.

The active controller holds the lock for as long as its connection lives; when the process dies, the
server drops the connection and the lock with it, and a standby's next ``acquire()`` (it tries every tick)
wins it, so it takes over within two ticks. Before each tick ``acquire()`` also confirms the lock is still
ours: a database restart silently ends the session, and then we are active only if we win it again.
The ledger is idempotent as well, so even a wrongly active second controller could not charge twice.
"""

from __future__ import annotations

from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

# "gpuL" "ctrl" as two 32-bit halves; it must differ from the ledger's and the migrations' lock keys.
LEASE_KEY = 0x67_70_4C_63_74_72_6C_00


class Lease:
    """The controller lease. Call ``acquire()`` at the start of each tick; act only when it returns True."""

    def __init__(self, engine: Engine, key: int = LEASE_KEY) -> None:
        self._engine = engine
        self._key = key
        self._connection: Connection | None = None

    @property
    def held(self) -> bool:
        return self._connection is not None

    def acquire(self) -> bool:
        """True when this process holds the lease now (taking it if free); False when another one does.

        Raises ``sqlalchemy.exc.OperationalError`` (or another ``DBAPIError``) when the database cannot
        be reached; the lease then counts as lost.
        """
        if self._connection is not None:
            try:
                if self._still_ours(self._connection):
                    return True
            except DBAPIError:
                pass
            self._drop()
        connection = self._engine.connect()
        try:
            won = bool(connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self._key}).scalar())
            connection.commit()
        except BaseException:
            connection.invalidate()
            connection.close()
            raise
        if won:
            self._connection = connection
        else:
            connection.close()
        return won

    def _still_ours(self, connection: Connection) -> bool:
        held = connection.execute(
            text(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND pid = pg_backend_pid() AND ((classid::bigint << 32) | objid::bigint) = :k)"
            ),
            {"k": self._key},
        ).scalar()
        connection.commit()
        return bool(held)

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.invalidate()
            connection.close()

    def release(self) -> None:
        """Give the lease up (on shutdown), so a standby can take over at once."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
            connection.commit()
        except DBAPIError:
            connection.invalidate()
        finally:
            connection.close()
