"""Operational settings (tier thresholds, grace period, dry-run), kept as versions: a change is a new row
with its reason, audited in the same transaction; the newest version is in force."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import text

from api import audit
from api.errors import unprocessable
from api.operation import Call
from api.services import services
from ledger.money import format_amount, parse_amount

_SETTINGS_LOCK = 0x676C6173
DEFAULTS: dict[str, Any] = {"tier_warning": "100.000000", "tier_limited": "10.000000", "tier_blocked": "0.000000",
                            "grace_period_seconds": 0, "dry_run": False}


def _current(conn: Any) -> tuple[int | None, dict[str, Any]]:
    row = conn.execute(text("SELECT id, settings FROM api.settings_version ORDER BY id DESC LIMIT 1")).one_or_none()
    return (None, dict(DEFAULTS)) if row is None else (row[0], {**DEFAULTS, **row[1]})


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
    """Merge the given keys into the current settings; thresholds must stay descending."""
    changes = {k: v for k, v in call.body.items() if k != "reason"}
    with services(call).write() as conn:
        # Serialise changes so each version is computed from the one before it.
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SETTINGS_LOCK})
        version, before = _current(conn)
        after = {**before, **changes}
        warning, limited, blocked = (parse_amount(after[k]) for k in ("tier_warning", "tier_limited", "tier_blocked"))
        if not warning >= limited >= blocked:
            raise unprocessable("invalid_settings", "tier thresholds must satisfy warning >= limited >= blocked")
        after.update(tier_warning=format_amount(warning), tier_limited=format_amount(limited),
                     tier_blocked=format_amount(blocked))
        new = conn.execute(text("INSERT INTO api.settings_version (settings, reason, actor)"
                                " VALUES (CAST(:s AS jsonb), :r, :a) RETURNING id"),
                           {"s": json.dumps(after), "r": call.body["reason"], "a": call.actor}).scalar_one()
        audit.record(conn, actor=call.actor, action="settings.update", target=f"settings:{new}",
                     before={"version": version, **before}, after={"version": new, **after},
                     request_id=call.request_id)
    return {"version": new, "settings": after}
