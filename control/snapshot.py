"""What the controller reads of control at the start of each tick, in one query: the newest settings version
and each user's newest enforcement override (a newer row replaces an older one, control/overrides.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from control.overrides import Override
from control.versions import Version

_READ = text(
    """
    SELECT (SELECT json_build_object('id', id, 'settings', settings, 'reason', reason, 'actor', actor, 'at', at)
              FROM control.settings_version ORDER BY id DESC LIMIT 1) AS version,
           (SELECT coalesce(json_agg(json_build_object('id', o.id, 'user', o.billing_user, 'action', o.action,
                                                       'reason', o.reason, 'until', o.until, 'at', o.at)), '[]')
              FROM (SELECT DISTINCT ON (billing_user) id, billing_user, action, reason, until, at
                      FROM control.enforcement_override ORDER BY billing_user, id DESC) o) AS overrides
    """
)


@dataclass(frozen=True)
class Snapshot:
    version: Version | None = None
    overrides: Mapping[str, Override] = field(default_factory=lambda: MappingProxyType({}))


def _override(row: Mapping[str, Any]) -> Override:
    return Override(
        id=int(row["id"]), user=str(row["user"]), action=str(row["action"]), reason=str(row["reason"]),
        until=datetime.fromisoformat(row["until"]) if row["until"] is not None else None,
        at=datetime.fromisoformat(row["at"]),
    )


def _version(row: Mapping[str, Any] | None) -> Version | None:
    if row is None:
        return None
    return Version(id=int(row["id"]), settings=row["settings"], reason=str(row["reason"]), actor=str(row["actor"]),
                   at=datetime.fromisoformat(row["at"]))


def read(conn: Connection) -> Snapshot:
    row = conn.execute(_READ).one()
    return Snapshot(_version(row.version), MappingProxyType({o.user: o for o in map(_override, row.overrides)}))
