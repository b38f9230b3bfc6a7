"""Operational settings the controller reads at each tick (docs/api.md, "Settings"): tier thresholds, the
kill grace and dry-run. A change is a new version with its reason, audited in the same transaction; the
newest version is in force. A version holds only the keys ever set (a key never set is left to the
controller's environment), and the three thresholds always together, so a version is complete on its own.

What is stored is what ``control.settings`` parses, the rule the controller applies, so a stored version is
never one the controller refuses; and a version it would refuse (written before that rule) is shown as not
in force, with the problem, and its bad keys are not inherited by the next PUT."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import text

from api import audit
from api.errors import unprocessable
from api.operation import Call
from api.services import services
from control.settings import SettingsError, merge, parse
from ledger.tiers import Thresholds

_SETTINGS_LOCK = 0x676C6173


def _current(conn: Any) -> tuple[int | None, dict[str, Any]]:
    row = conn.execute(text("SELECT id, settings FROM api.settings_version ORDER BY id DESC LIMIT 1")).one_or_none()
    return (None, {}) if row is None else (row[0], row[1])


def _standing(version: int | None, document: Any, base: Thresholds) -> dict[str, Any]:
    """Whether the controller applies the version (it falls back on its own configuration as a whole when
    not), and why not."""
    try:
        parse(document, base, version)
    except SettingsError as exc:
        return {"in_force": False, "problem": {"key": exc.key, "message": str(exc)}}
    return {"in_force": True, "problem": None}


def thresholds_in_force(call: Call) -> Thresholds:
    """The tier thresholds the controller enforces: the newest version's when the controller applies it and
    it holds them, else this process's GPULEDGER_TIER_* (the controller's, in one deployment)."""
    svc = services(call)
    base = svc.ledger.config.thresholds
    with svc.read() as conn:
        version, document = _current(conn)
    try:
        return parse(document, base, version).thresholds or base
    except SettingsError:
        return base


def get_settings(call: Call) -> Any:
    svc = services(call)
    with svc.read() as conn:
        version, document = _current(conn)
    return {"version": version, "settings": document, **_standing(version, document, svc.ledger.config.thresholds)}


def history(call: Call) -> Any:
    svc = services(call)
    with svc.read() as conn:
        rows = conn.execute(text("SELECT id, settings, reason, actor, at FROM api.settings_version"
                                 " ORDER BY id DESC LIMIT 500")).all()
    return [{"version": r[0], "settings": r[1], "reason": r[2], "actor": r[3], "at": r[4].isoformat(),
             **_standing(r[0], r[1], svc.ledger.config.thresholds)} for r in rows]


def put_settings(call: Call) -> Any:
    """Merge the given keys into the version in force. Thresholds not given come from it, else from the
    GPULEDGER_TIER_* values this process runs with (the controller's, in one deployment)."""
    svc = services(call)
    changes = {k: v for k, v in call.body.items() if k != "reason"}
    with svc.write() as conn:
        # Serialise changes so each version is computed from the one before it.
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SETTINGS_LOCK})
        version, before = _current(conn)
        try:
            settings, dropped = merge(before if isinstance(before, dict) else {}, changes,
                                      svc.ledger.config.thresholds)
        except SettingsError as exc:
            raise unprocessable("invalid_settings", str(exc), field=exc.key) from None
        after = settings.document()
        new = conn.execute(text("INSERT INTO api.settings_version (settings, reason, actor)"
                                " VALUES (CAST(:s AS jsonb), :r, :a) RETURNING id"),
                           {"s": json.dumps(after), "r": call.body["reason"], "a": call.actor}).scalar_one()
        audit.record(conn, actor=call.actor, action="settings.update", target=f"settings:{new}",
                     before={"version": version, "settings": before},
                     after={"version": new, "settings": after, "dropped": dropped}, request_id=call.request_id)
    return {"version": new, "settings": after, "in_force": True, "problem": None, "dropped": dropped}
