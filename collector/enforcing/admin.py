"""What admins decided, read once per tick through ``control``: the newest settings version and each user's
newest enforcement override (docs/api.md). Control owns these tables; the controller only reads them.

The control chain may be migrated after the controller starts (or never, on a controller-only install): until
its tables exist the controller runs on its environment alone, says so once, and looks again each tick.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from sqlalchemy.engine import Connection

from collector.enforcing.rules import Rules, lay_over
from control import snapshot
from control.overrides import Override
from control.presence import ControlTable
from control.settings import SettingsError, parse
from control.versions import Version

log = logging.getLogger("gpuledger.controller")


@dataclass(frozen=True)
class AdminState:
    rules: Rules
    overrides: Mapping[str, Override] = field(default_factory=lambda: MappingProxyType({}))


class AdminReader:
    """Reads the admin state in one query per tick; reports each settings problem once per version."""

    def __init__(self) -> None:
        self._table = ControlTable("control.settings_version", "admin settings and overrides are not applied")
        self._reported: set[int] = set()

    def read(self, conn: Connection, defaults: Rules) -> AdminState:
        if not self._table.present(conn):
            return AdminState(defaults)
        state = snapshot.read(conn)
        return AdminState(self._rules(defaults, state.version), state.overrides)

    def _rules(self, defaults: Rules, version: Version | None) -> Rules:
        if version is None:
            return defaults
        report = version.id not in self._reported
        self._reported.add(version.id)
        try:
            settings = parse(version.settings, defaults.thresholds, version.id)
        except SettingsError as exc:
            if report:
                log.error("%s; the environment's settings apply instead", exc)
            return defaults
        if settings.ignored and report:
            log.warning("settings version %d: unknown keys ignored: %s", version.id, ", ".join(settings.ignored))
        return lay_over(defaults, version.id, settings)
