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
        "eta_basis": _text(s.basis) if r.state is State.QUEUED else "",
        "gpus": [{"node": g.node, "index": g.index, "model": g.model} for g in r.gpus][:64],
        "offer_expires": _unix(r.offer_expires) if r.state is State.OFFERED else None,
        "ends": _unix(r.ends) if r.state is State.GRANTED else None,
        "reason": _text(r.reason),
    }


def entries(standings: Sequence[Standing]) -> list[dict[str, Any]]:
    """A user's requests as the answer lists them: the live ones, then the newest ended ones, at most
    ``MAX_REQUESTS``, in id order (the same for every node the answer goes to)."""
    live = [s for s in standings if s.request.live]
    ended = [s for s in standings if not s.request.live][::-1][:max(0, MAX_REQUESTS - len(live))]
    return [_entry(s) for s in sorted(live[:MAX_REQUESTS] + ended, key=lambda s: s.request.id)]


def document(uid: int, linux_user: str, listed: list[dict[str, Any]], now: datetime) -> dict[str, Any]:
    """The answer for ``uid`` (``linux_user`` on the node it goes to) with ``entries``' requests."""
    return {"version": 1, "uid": uid, "user": linux_user, "updated_at": int(now.timestamp()), "requests": listed}


def fingerprint(listed: Sequence[dict[str, Any]]) -> tuple[object, ...]:
    """What, when it changes, makes an answer due at once. The time and a queued request's estimate wait for
    the refresh: an estimate of "free now" moves every tick."""
    return tuple((r["id"], r["state"], r["position"], r["offer_expires"], r["ends"], r["reason"],
                  tuple((g["node"], g["index"]) for g in r["gpus"])) for r in listed)
