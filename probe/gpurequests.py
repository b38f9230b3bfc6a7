"""``gpu-requests``: hand the controller the GPU-queue requests users dropped into their box, and
``gpu-requests-done``: forget those it acknowledged (docs/gpu-request.md).

``gpu-request`` on a node writes one small JSON object into the root-owned sticky box ``gpu_request_dir``; the
box is a ``probe.dropbox`` box, so the identity is the file's owner uid and every unsafe file is refused and
reported. An accepted entry moves into the holding place ``gpu_request_hold_dir`` (probe/holding.py) and is
served again by every call until the controller acknowledges its handle, after its transaction committed. This
module is the content's shape only: the controller still decides what it means (an unknown model, a cap, an id
that is not the user's).
"""

import json
import os
import re
import time
from decimal import Decimal, InvalidOperation

from probe import dropbox, holding, status
from probe.errors import Refused
from probe.verbs import ok

MAX_BYTES = 4096
MAX_AGE_S = 600
MAX_ENTRIES = 200
# A list of at most MAX_ENTRIES handles fits in this with room to spare (26 bytes each as JSON).
MAX_ACK_BYTES = 8192
MAX_MODELS = 16
MAX_COUNT = 64
MAX_HOURS = Decimal(168)
NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}\Z")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}\Z")
HOURS = re.compile(r"[0-9]{1,3}(\.[0-9]{1,6})?\Z")

# op -> the keys its body has, exactly (every body also has "op" and "nonce").
KEYS = {
    "request": ("models", "count", "hours", "node", "run"),
    "cancel": ("id",),
    "release": ("id",),
    "claim": ("id",),
}


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _id_problem(value, optional):
    if value is None and optional:
        return None
    if not _is_int(value) or not 1 <= value <= 2**63 - 1:
        return "id must be a positive integer" + (" or null" if optional else "")
    return None


def _hours_problem(value):
    if value is None:
        return None
    if not isinstance(value, str) or not HOURS.match(value):
        return "hours must be a decimal string such as \"4\" or \"0.5\", or null"
    try:
        hours = Decimal(value)
    except InvalidOperation:
        return "hours is not a decimal"
    if not 0 < hours <= MAX_HOURS:
        return "hours must be more than 0 and at most %s" % MAX_HOURS
    return None


def _request_problem(body):
    models = body["models"]
    if not isinstance(models, list) or len(models) > MAX_MODELS:
        return "models must be a list of at most %d names" % MAX_MODELS
    if not all(isinstance(model, str) and NAME.match(model) for model in models):
        return "each model must match %s" % NAME.pattern[:-2]
    if not _is_int(body["count"]) or not 1 <= body["count"] <= MAX_COUNT:
        return "count must be an integer 1..%d" % MAX_COUNT
    problem = _hours_problem(body["hours"])
    if problem:
        return problem
    if body["node"] is not None and not (isinstance(body["node"], str) and NAME.match(body["node"])):
        return "node must be null or match %s" % NAME.pattern[:-2]
    if not isinstance(body["run"], bool):
        return "run must be true or false"
    return None


def _refuse_float(text):
    raise ValueError("numbers with a fraction or exponent are not accepted (%s)" % text)


def problem_of(body):
    """What is wrong with a decoded request body, or None."""
    if not isinstance(body, dict):
        return "must be a JSON object"
    op = body.get("op")
    if op not in KEYS:
        return "op must be one of " + " ".join(KEYS)
    expected = {"op", "nonce"} | set(KEYS[op])
    if set(body) != expected:
        extra, missing = sorted(set(body) - expected), sorted(expected - set(body))
        return "%s takes exactly the keys %s (unknown: %s; missing: %s)" % (
            op, " ".join(sorted(expected)), " ".join(extra) or "-", " ".join(missing) or "-")
    if not isinstance(body["nonce"], str) or not NONCE.match(body["nonce"]):
        return "nonce must be 16 to 64 characters of [A-Za-z0-9_-]"
    if op == "request":
        return _request_problem(body)
    return _id_problem(body["id"], optional=op == "release")


def parse_request(content):
    """``probe.dropbox.Box.parse`` for a request file: ``("malformed", why, None)`` or ``(None, "", body)``."""
    try:
        body = json.loads(content.decode("utf-8"), parse_float=_refuse_float, parse_constant=_refuse_float)
    except ValueError as error:  # UnicodeDecodeError and JSONDecodeError are both ValueErrors
        return "malformed", str(error)[:200], None
    problem = problem_of(body)
    if problem is not None:
        return "malformed", problem, None
    return None, "", body


BOX = dropbox.Box(MAX_BYTES, MAX_AGE_S, MAX_ENTRIES, parse_request)


def _view(entry):
    if isinstance(entry, holding.Held):
        return {"handle": entry.handle, "uid": entry.uid, "user": entry.user, "ctime": entry.ctime,
                "request": entry.value}
    return {"uid": entry.uid, "reason": entry.reason, "detail": entry.detail}


def _handle(entry):
    return entry.handle


def gpu_requests(context, command):
    directory = context.config.gpu_request_dir
    try:
        os.lstat(directory)
    except FileNotFoundError:  # the role has not run yet: nothing was ever filed or held
        return ok(command, spool=directory, present=False, more=False, requests=[], refused=[])
    now = time.time()
    with holding.Place(context.config.gpu_request_hold_dir, problem_of) as place:
        held, dropped, more = place.served(now, MAX_ENTRIES)
        room = MAX_ENTRIES - len(held) - len(dropped)
        entries, box_more = dropbox.collect(BOX._replace(max_entries=room), directory, context.policy.uid_min,
                                            now, keep=place.hold)
    entries = held + dropped + (entries or [])
    # In handle order, which is filing order (to the second): every serving of the same entries is alike.
    requests = [_view(e) for e in sorted((e for e in entries if isinstance(e, holding.Held)), key=_handle)]
    refused = [_view(e) for e in entries if not isinstance(e, holding.Held)]
    return ok(command, spool=directory, present=True, more=more or box_more, requests=requests, refused=refused)


def acknowledged(raw):
    """The handles of a ``gpu-requests-done`` stdin, exactly ``{"handles": [HANDLE, ...]}``, or ``Refused``."""
    document = status.decode(raw, MAX_ACK_BYTES)
    if set(document) != {"handles"} or not isinstance(document["handles"], list):
        raise Refused("bad_document", 'must be exactly {"handles": [...]}')
    handles = document["handles"]
    if len(handles) > MAX_ENTRIES:
        raise Refused("bad_document", "at most %d handles" % MAX_ENTRIES)
    for handle in handles:
        if not isinstance(handle, str) or not holding.HANDLE.match(handle):
            raise Refused("bad_document", "a handle is 10 digits, a dash and 16 hex digits: %s" % ascii(handle)[:40])
    if len(set(handles)) != len(handles):
        raise Refused("bad_document", "a handle is repeated")
    return handles


def gpu_requests_done(context, command):
    handles = acknowledged(context.read_stdin(MAX_ACK_BYTES + 1))
    with holding.Place(context.config.gpu_request_hold_dir, problem_of) as place:
        removed, unknown = place.release(handles)
    return ok(command, removed=removed, unknown=unknown)
