"""What admins decided through the API, read once per tick: the newest settings version and each user's
newest enforcement override (docs/api.md). The API owns these tables; the controller only reads them.

The api chain may be migrated after the controller starts (or never, on a controller-only install): until
its tables exist the controller runs on its environment alone, says so once, and looks again each tick.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from collector.enforcing.rules import Rules, lay_over
from control.overrides import Override
from control.settings import SettingsError, parse

log = logging.getLogger("gpuledger.controller")

_READ = text(
    """
    SELECT (SELECT json_build_object('id', id, 'settings', settings) FROM api.settings_version
             ORDER BY id DESC LIMIT 1) AS settings,
           (SELECT coalesce(json_agg(json_build_object('id', o.id, 'user', o.billing_user, 'action', o.action,
                                                       'reason', o.reason, 'until', o.until, 'at', o.at)), '[]')
              FROM (SELECT DISTINCT ON (billing_user) id, billing_user, action, reason, until, at
                      FROM api.enforcement_override ORDER BY billing_user, id DESC) o) AS overrides
    """
)


class ApiTable:
    """Whether one of the API's tables exists yet: once seen it is assumed to stay; while it is missing,
    the check runs at most every ``recheck_s`` seconds and the absence is logged once."""

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
            log.warning("%s does not exist (the api migrations have not run): %s", self.name, self.what)
            self._reported = True
        return self._present


@dataclass(frozen=True)
class AdminState:
    rules: Rules
    overrides: Mapping[str, Override] = field(default_factory=lambda: MappingProxyType({}))


def _override(row: Mapping[str, Any]) -> Override:
    return Override(
        id=int(row["id"]), user=str(row["user"]), action=str(row["action"]), reason=str(row["reason"]),
        until=datetime.fromisoformat(row["until"]) if row["until"] is not None else None,
        at=datetime.fromisoformat(row["at"]),
    )


class AdminReader:
    """Reads the admin state in one query per tick; reports each settings problem once per version."""

    def __init__(self) -> None:
        self._table = ApiTable("api.settings_version", "admin settings and overrides are not applied")
        self._reported: set[int] = set()

    def read(self, conn: Connection, defaults: Rules) -> AdminState:
        if not self._table.present(conn):
            return AdminState(defaults)
        row = conn.execute(_READ).one()
        overrides = {o.user: o for o in map(_override, row.overrides)}
        return AdminState(self._rules(defaults, row.settings), MappingProxyType(overrides))

    def _rules(self, defaults: Rules, version: Mapping[str, Any] | None) -> Rules:
        if version is None:
            return defaults
        number, document = int(version["id"]), version["settings"]
        report = number not in self._reported
        self._reported.add(number)
        try:
            settings = parse(document, defaults.thresholds, number)
        except SettingsError as exc:
            if report:
                log.error("%s; the environment's settings apply instead", exc)
            return defaults
        if settings.ignored and report:
            log.warning("settings version %d: unknown keys ignored: %s", number, ", ".join(settings.ignored))
        return lay_over(defaults, number, settings)
