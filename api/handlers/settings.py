"""Operational settings the controller reads at each tick (docs/api.md, "Settings"): tier thresholds, the
kill grace and dry-run. A change is a new version with its reason, audited in the same transaction; the
newest version is in force. A version holds only the keys ever set (a key never set is left to the
controller's environment), and the three thresholds always together, so a version is complete on its own."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import text

from api import audit
from api.errors import unprocessable
from api.operation import Call
from api.services import services
from ledger.money import format_amount, parse_amount
from ledger.tiers import Thresholds

_SETTINGS_LOCK = 0x676C6173
TIERS = ("tier_warning", "tier_limited", "tier_blocked")


def _current(conn: Any) -> tuple[int | None, dict[str, Any]]:
    row = conn.execute(text("SELECT id, settings FROM api.settings_version ORDER BY id DESC LIMIT 1")).one_or_none()
    return (None, {}) if row is None else (row[0], dict(row[1]))


def _thresholds(document: dict[str, Any], base: Thresholds) -> dict[str, str]:
    """The three thresholds of ``document`` (those it lacks from ``base``) as six-decimal text, descending."""
    given = {k: parse_amount(document[k]) for k in TIERS if k in document}
    warning, limited, blocked = (given.get(k, default) for k, default in zip(
        TIERS, (base.warning, base.limited, base.blocked), strict=True))
    if not warning >= limited >= blocked:
        raise unprocessable("invalid_settings", "tier thresholds must satisfy warning >= limited >= blocked",
                            tier_warning=format_amount(warning), tier_limited=format_amount(limited),
                            tier_blocked=format_amount(blocked))
    return dict(zip(TIERS, map(format_amount, (warning, limited, blocked)), strict=True))


def thresholds_in_force(call: Call) -> Thresholds:
    """The tier thresholds the controller enforces: the newest version's, else this process's GPULEDGER_TIER_*."""
    svc = services(call)
    with svc.read() as conn:
        _, settings = _current(conn)
    if not all(k in settings for k in TIERS):
        return svc.ledger.config.thresholds
    warning, limited, blocked = (parse_amount(settings[k]) for k in TIERS)
    return Thresholds(warning=warning, limited=limited, blocked=blocked)


def get_settings(call: Call) -> Any:
    with services(call).read() as conn:
        version, settings = _current(conn)
    return {"version": version, "settings": settings}


def history(call: Call) -> Any:
    with services(call).read() as conn:
        rows = conn.execute(text("SELECT id, settings, reason, actor, at FROM api.settings_version"
                                 " ORDER BY id DESC LIMIT 500")).all()
    return [{"version": r[0], "settings": r[1], "reason": r[2], "actor": r[3], "at": r[4].isoformat()} for r in rows]


def put_settings(call: Call) -> Any:
    """Merge the given keys into the version in force. Thresholds not given come from it, else from the
    GPULEDGER_TIER_* values this process runs with (the controller's, in one deployment)."""
    svc = services(call)
    changes = {k: v for k, v in call.body.items() if k != "reason"}
    with svc.write() as conn:
        # Serialise changes so each version is computed from the one before it.
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SETTINGS_LOCK})
        version, before = _current(conn)
        after = {**before, **changes}
        if any(k in after for k in TIERS):
            after.update(_thresholds(after, svc.ledger.config.thresholds))
        new = conn.execute(text("INSERT INTO api.settings_version (settings, reason, actor)"
                                " VALUES (CAST(:s AS jsonb), :r, :a) RETURNING id"),
                           {"s": json.dumps(after), "r": call.body["reason"], "a": call.actor}).scalar_one()
        audit.record(conn, actor=call.actor, action="settings.update", target=f"settings:{new}",
                     before={"version": version, **before}, after={"version": new, **after},
                     request_id=call.request_id)
    return {"version": new, "settings": after}
