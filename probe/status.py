"""``status-write``: validate the controller's JSON document and write docs/status-file.md version 1.

Validation returns every problem as data; the writer (``probe.atomicfile``) never follows a symlink and never
leaves a partial file.
"""

import json
import re

from probe import atomicfile
from probe.errors import Refused

MAX_DOCUMENT_BYTES = 64 * 1024
MAX_TEXT_CHARS = 300
TIERS = ("normal", "warning", "limited", "blocked", "exempt")
_DECIMAL = re.compile(r"-?[0-9]{1,15}(\.[0-9]{1,12})?\Z")
_CURRENCY = re.compile(r"[A-Z]{3}\Z")

# The file's keys in the order they are written.
KEYS = (
    "version",
    "user",
    "uid",
    "billing_user",
    "updated_at",
    "tier",
    "balance",
    "currency",
    "burn_rate_per_hour",
    "time_to_empty_hours",
    "gpu_blocked",
    "cpu_quota_percent",
    "kill_at",
    "notice",
    "recharge_hint",
)


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def text_problem(value):
    if not isinstance(value, str):
        return "must be a string"
    if len(value) > MAX_TEXT_CHARS:
        return "longer than %d characters" % MAX_TEXT_CHARS
    if any(ord(ch) < 32 or 127 <= ord(ch) < 160 or ch in "\u2028\u2029" for ch in value):
        return "contains a control character"
    return None


def _decimal_problem(value, optional=False):
    if value is None and optional:
        return None
    if not isinstance(value, str) or not _DECIMAL.match(value):
        return "must be a decimal string like 12.345000" + (" or null" if optional else "")
    return None


_CHECKS = {
    "version": lambda v: None if is_int(v) and v == 1 else "must be 1",
    "user": text_problem,
    "uid": lambda v: None if is_int(v) else "must be an integer",
    "billing_user": text_problem,
    "updated_at": lambda v: None if is_int(v) and v >= 0 else "must be a non-negative integer",
    "tier": lambda v: None if v in TIERS else "must be one of " + " ".join(TIERS),
    "balance": _decimal_problem,
    "currency": lambda v: None if isinstance(v, str) and _CURRENCY.match(v) else "must be an ISO 4217 code",
    "burn_rate_per_hour": _decimal_problem,
    "time_to_empty_hours": lambda v: _decimal_problem(v, optional=True),
    "gpu_blocked": lambda v: None if isinstance(v, bool) else "must be true or false",
    "cpu_quota_percent": lambda v: _decimal_problem(v, optional=True),
    "kill_at": lambda v: None if v is None or (is_int(v) and v >= 0) else "must be a non-negative integer or null",
    "notice": text_problem,
    "recharge_hint": text_problem,
}


def _refuse_float(text):
    raise ValueError("floats are not accepted (%s); send decimals as strings" % text)


def decode(raw, max_bytes=MAX_DOCUMENT_BYTES):
    """Parse stdin bytes into a JSON object, refusing more than ``max_bytes``, invalid UTF-8 and JSON floats."""
    if len(raw) > max_bytes:
        raise Refused("bad_document", "larger than %d bytes" % max_bytes)
    try:
        document = json.loads(raw.decode("utf-8"), parse_float=_refuse_float, parse_constant=_refuse_float)
    except ValueError as error:
        raise Refused("bad_document", str(error)[:300]) from None
    if not isinstance(document, dict):
        raise Refused("bad_document", "must be a JSON object")
    return document


def problems(document, uid, account_name):
    """Every reason ``document`` may not be written as ``uid``'s status file (empty: it may)."""
    found = ["%s: unknown key" % key for key in sorted(set(document) - set(KEYS))]
    found += ["%s: missing" % key for key in KEYS if key not in document]
    for key in KEYS:
        if key in document:
            problem = _CHECKS[key](document[key])
            if problem:
                found.append("%s: %s" % (key, problem))
    if is_int(document.get("uid")) and document["uid"] != uid:
        found.append("uid: %d does not match the command's uid %d" % (document["uid"], uid))
    if isinstance(document.get("user"), str) and document["user"] != account_name:
        found.append("user: %s is not uid %d's name on this node (%s)" % (ascii(document["user"]), uid, account_name))
    return found


def render(document):
    """The file's bytes: ``key=value`` lines in ``KEYS`` order; null is the empty value."""
    lines = []
    for key in KEYS:
        value = document[key]
        if value is None:
            value = ""
        elif isinstance(value, bool):
            value = "1" if value else "0"
        lines.append("%s=%s\n" % (key, value))
    return "".join(lines).encode("utf-8")


def write(status_dir, uid, data):
    """Atomically replace ``<status_dir>/<uid>.status`` with ``data``; returns whether the bytes changed."""
    return atomicfile.replace(status_dir, "%d.status" % uid, data)
