"""A node's ``gpu-requests`` answer (docs/node-command.md), parsed field by field: the node checked each body's
shape, but its answer is untrusted. A malformed entry is reported and skipped, so one bad entry never costs
the others or the tick; only an answer that is not the documented document at all is refused whole."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
HANDLE = re.compile(r"[0-9]{10}-[0-9a-f]{16}")  # probe.holding.HANDLE


@dataclass(frozen=True)
class Filed:
    """One operation a user left on ``node``: the kernel-vouched owner of its file, the body, and the handle the
    node holds it under until ``gpu-requests-done`` (None from a node whose probe predates the holding place:
    it removed the file as it answered, and there is nothing to acknowledge)."""

    node: str
    uid: int
    linux_user: str
    ctime: int
    body: Mapping[str, Any]
    handle: str | None = None


@dataclass(frozen=True)
class Refusal:
    """A file the node refused (symlink, foreign owner, malformed, ...), with its owner where known."""

    node: str
    uid: int | None
    reason: str
    detail: str


@dataclass(frozen=True)
class Report:
    node: str
    filed: tuple[Filed, ...]
    refused: tuple[Refusal, ...]
    malformed: tuple[str, ...]
    more: bool


class BadReport(ValueError):
    def __init__(self, node: str, problem: str) -> None:
        super().__init__(f"{node}: gpu-requests answered {problem}")
        self.node = node
        self.problem = problem


def _int(value: object, low: int, high: int) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        return None
    return value


def _text(value: object, limit: int) -> str | None:
    return value if isinstance(value, str) and len(value) <= limit else None


def _filed(node: str, entry: object) -> Filed | None:
    if not isinstance(entry, dict):
        return None
    uid = _int(entry.get("uid"), 0, 2**32 - 1)
    user = _text(entry.get("user"), 64)
    ctime = _int(entry.get("ctime"), 0, 2**40)
    body = entry.get("request")
    handle = entry.get("handle")
    if uid is None or not user or ctime is None or not isinstance(body, dict) or not isinstance(body.get("op"), str):
        return None
    if handle is not None and not (isinstance(handle, str) and HANDLE.fullmatch(handle)):
        return None
    return Filed(node, uid, user, ctime, body, handle)


def _refusal(node: str, entry: object) -> Refusal | None:
    if not isinstance(entry, dict):
        return None
    uid = entry.get("uid")
    reason = _text(entry.get("reason"), 64)
    detail = _text(entry.get("detail", ""), 300)
    if (uid is not None and _int(uid, 0, 2**32 - 1) is None) or not reason or detail is None:
        return None
    return Refusal(node, uid, reason, detail)


def parse_report(node: str, stdout: bytes) -> Report:
    """The operations, the node's refusals, and what was malformed (each as a short description)."""
    try:
        document = json.loads(stdout)
    except ValueError:
        raise BadReport(node, "no JSON") from None
    if not isinstance(document, dict) or document.get("ok") is not True:
        raise BadReport(node, "no ok document")
    entries, refusals = document.get("requests", []), document.get("refused", [])
    if not isinstance(entries, list) or not isinstance(refusals, list):
        raise BadReport(node, "no lists of requests and refusals")
    malformed: list[str] = []
    filed = _checked(node, entries, _filed, "request", malformed)
    refused = _checked(node, refusals, _refusal, "refusal", malformed)
    return Report(node, tuple(filed), tuple(refused), tuple(malformed), document.get("more") is True)


def _checked(node: str, entries: list[object], check: Callable[[str, object], T | None], kind: str,
             malformed: list[str]) -> list[T]:
    """The entries ``check`` accepts; each one it refuses is described in ``malformed``."""
    kept = []
    for entry in entries:
        value = check(node, entry)
        if value is None:
            malformed.append(f"{kind} entry {json.dumps(entry)[:120]}")
        else:
            kept.append(value)
    return kept
