"""Whether control's tables exist yet, for the controller. The control chain may be migrated after the controller
starts (or never, on a controller-only install): until a table exists the controller goes without what it holds,
says so once, and looks again."""

from __future__ import annotations

import logging
import time

from sqlalchemy import text
from sqlalchemy.engine import Connection

log = logging.getLogger("gpuledger.controller")


class ControlTable:
    """One of control's tables: once seen it is assumed to stay; while it is missing, the check runs at most
    every ``recheck_s`` seconds and the absence is logged once, saying ``what`` goes without it."""

    def __init__(self, name: str, what: str, recheck_s: float = 0.0) -> None:
        self.name = name
        self.what = what
        self.recheck_s = recheck_s
        self._present = False
        self._checked_at: float | None = None
        self._reported = False

    def present(self, conn: Connection) -> bool:
        if self._present:
            return True
        if self._checked_at is not None and time.monotonic() - self._checked_at < self.recheck_s:
            return False
        self._checked_at = time.monotonic()
        self._present = bool(conn.execute(text("SELECT to_regclass(:t) IS NOT NULL"), {"t": self.name}).scalar())
        if not self._present and not self._reported:
            log.warning("%s does not exist (the control migrations have not run): %s", self.name, self.what)
            self._reported = True
        return self._present
