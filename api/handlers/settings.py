"""Operational settings the controller reads at each tick (docs/api.md, "Settings"): tier thresholds, the
kill grace, dry-run and the GPU queue's policy (the ``queue_`` keys). A change is a new version with its
reason (``control.versions``), audited in the same transaction; the newest version is in force. A version holds
only the keys ever set (a key never set is left to the controller's environment, a queue key to the queue's
defaults), and the three thresholds always together, so a version is complete on its own.

What is stored is what ``control.settings`` parses, the rule the controller applies, so a stored version is
never one the controller refuses; and a version it would refuse (written before that rule) is shown as not
in force, with the problem, and its bad keys are not inherited by the next PUT."""

from __future__ import annotations

from typing import Any

from api import audit, render
from api.errors import unprocessable
from api.operation import Call
from api.services import services
from control import versions
from control.settings import SettingsError, in_force, merge, parse
from ledger.tiers import Thresholds


def _current(version: versions.Version | None) -> tuple[int | None, Any]:
    return (None, {}) if version is None else (version.id, version.settings)


def _standing(version: int | None, document: Any, base: Thresholds) -> dict[str, Any]:
    """Whether the controller applies the version (it falls back on its own configuration as a whole when
    not), and why not."""
    try:
        parse(document, base, version)
    except SettingsError as exc:
        return {"in_force": False, "problem": {"key": exc.key, "message": str(exc)}}
    return {"in_force": True, "problem": None}


def thresholds_in_force(call: Call) -> Thresholds:
    """The tier thresholds the controller enforces: the version in force's when it holds them, else this
    process's GPULEDGER_TIER_*."""
    svc = services(call)
    base = svc.ledger.config.thresholds
    with svc.read() as conn:
        return in_force(versions.newest(conn), base).thresholds or base


def get_settings(call: Call) -> Any:
    svc = services(call)
    with svc.read() as conn:
        version, document = _current(versions.newest(conn))
    return {"version": version, "settings": document, **_standing(version, document, svc.ledger.config.thresholds)}


def history(call: Call) -> Any:
    svc = services(call)
    with svc.read() as conn:
        rows = versions.history(conn)
    return [{"version": v.id, "settings": v.settings, "reason": v.reason, "actor": v.actor, "at": render.when(v.at),
             **_standing(v.id, v.settings, svc.ledger.config.thresholds)} for v in rows]


def put_settings(call: Call) -> Any:
    """Merge the given keys into the version in force. Thresholds not given come from it, else from the
    GPULEDGER_TIER_* values this process runs with (the controller's, in one deployment)."""
    svc = services(call)
    changes = {k: v for k, v in call.body.items() if k != "reason"}
    with svc.write() as conn:
        versions.lock_for_change(conn)
        version, before = _current(versions.newest(conn))
        try:
            settings, dropped = merge(before if isinstance(before, dict) else {}, changes,
                                      svc.ledger.config.thresholds)
        except SettingsError as exc:
            raise unprocessable("invalid_settings", str(exc), field=exc.key) from None
        after = settings.document()
        new = versions.append(conn, after, call.body["reason"], call.actor).id
        audit.record(conn, actor=call.actor, action="settings.update", target=f"settings:{new}",
                     before={"version": version, "settings": before},
                     after={"version": new, "settings": after, "dropped": dropped}, request_id=call.request_id)
    return {"version": new, "settings": after, "in_force": True, "problem": None, "dropped": dropped}
