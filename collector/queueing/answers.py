"""Each user's queue answer, the ``queue-status UID`` document (docs/node-command.md, docs/gpu-request.md),
built from the stored requests. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from control.queue.records import State
from control.queue.store import Standing

MAX_REQUESTS = 64  # the node command refuses a longer document
MAX_TEXT = 300
# The node command refuses control characters (C0, DEL, C1) and the Unicode line separators in any text.
_UNSAFE = dict.fromkeys((*range(32), *range(127, 160), 0x2028, 0x2029), "?")


def _text(value: str) -> str:
    return value.translate(_UNSAFE)[:MAX_TEXT]


def _unix(at: datetime | None) -> int | None:
    return None if at is None else int(at.timestamp())


def _entry(s: Standing) -> dict[str, Any]:
    r = s.request
    return {
        "id": r.id, "nonce": s.nonce, "state": str(r.state),
        "position": s.position if r.state is State.QUEUED else None,
        "eta": _unix(s.eta) if r.state is State.QUEUED else None,
        "eta_basis": _text(s.eta_basis) if r.state is State.QUEUED else "",
        "gpus": [{"node": g.node, "index": g.index, "model": g.model} for g in r.gpus][:64],
        "offer_expires": _unix(r.offer_expires) if r.state is State.OFFERED else None,
        "ends": _unix(r.ends) if r.state is State.GRANTED else None,
        "reason": _text(r.reason),
    }


def document(uid: int, linux_user: str, standings: Sequence[Standing], now: datetime) -> dict[str, Any]:
    """The answer for ``uid`` (``linux_user`` on the node it goes to): the live requests, then the newest ended
    ones, at most ``MAX_REQUESTS``, in id order."""
    live = [s for s in standings if s.request.live]
    ended = [s for s in standings if not s.request.live][::-1][:max(0, MAX_REQUESTS - len(live))]
    chosen = sorted(live[:MAX_REQUESTS] + ended, key=lambda s: s.request.id)
    return {"version": 1, "uid": uid, "user": linux_user, "updated_at": int(now.timestamp()),
            "requests": [_entry(s) for s in chosen]}


def fingerprint(doc: dict[str, Any]) -> tuple[object, ...]:
    """What, when it changes, makes an answer due at once (the time alone waits for the refresh)."""
    return (doc["user"], tuple(tuple(sorted((k, repr(v)) for k, v in r.items())) for r in doc["requests"]))
