"""``queue-status``: validate the controller's GPU-queue answer for one user and render ``<uid>.queue``.

The file sits beside the status file (``status_dir``, root's, 0644, replaced atomically by
``probe.atomicfile``) and has the same shape: ``key=value`` lines with no control characters, so the bash
login hook reads the ``summary`` line with ``read`` alone and ``gpu-request --status`` reads every line
(docs/gpu-request.md has the format). The document is the contract with the controller:
``{"version": 1, "uid", "user", "updated_at", "requests": [...]}``.
"""

import time

from probe import status
from probe.gpurequests import NAME, NONCE

MAX_DOCUMENT_BYTES = status.MAX_DOCUMENT_BYTES
MAX_REQUESTS = 64
MAX_GPUS = 64
STATES = ("queued", "offered", "granted", "ended", "refused")
ACTIVE = ("granted", "offered", "queued")  # the banner's summary names the first of these a user has
DOCUMENT_KEYS = ("version", "uid", "user", "updated_at", "requests")
REQUEST_KEYS = ("id", "nonce", "state", "position", "eta", "eta_basis", "gpus", "offer_expires", "ends", "reason")
GPU_KEYS = ("index", "model", "node")


def file_name(uid):
    return "%d.queue" % uid


def _time_problem(value):
    return None if value is None or (status.is_int(value) and value >= 0) else "must be a Unix time or null"


def _gpu_problem(gpu):
    if not isinstance(gpu, dict) or set(gpu) != set(GPU_KEYS):
        return "each GPU must be an object with exactly %s" % " ".join(GPU_KEYS)
    if not status.is_int(gpu["index"]) or not 0 <= gpu["index"] <= 253:
        return "a GPU index must be an integer 0..253"
    if not all(isinstance(gpu[key], str) and NAME.match(gpu[key]) for key in ("model", "node")):
        return "a GPU's node and model must match %s" % NAME.pattern[:-2]
    return None


_REQUEST_CHECKS = {
    "id": lambda v: None if status.is_int(v) and v >= 1 else "must be a positive integer",
    "nonce": lambda v: None if isinstance(v, str) and NONCE.match(v) else "must be 16-64 of [A-Za-z0-9_-]",
    "state": lambda v: None if v in STATES else "must be one of " + " ".join(STATES),
    "position": lambda v: None if v is None or (status.is_int(v) and v >= 0) else "must be an integer >= 0 or null",
    "eta": _time_problem,
    "eta_basis": status.text_problem,
    "gpus": lambda v: (
        ("must be a list of at most %d GPUs" % MAX_GPUS)
        if not isinstance(v, list) or len(v) > MAX_GPUS
        else next(filter(None, map(_gpu_problem, v)), None)
    ),
    "offer_expires": _time_problem,
    "ends": _time_problem,
    "reason": status.text_problem,
}


def _request_problems(index, request):
    if not isinstance(request, dict):
        return ["requests[%d]: must be an object" % index]
    found = ["requests[%d].%s: unknown key" % (index, key) for key in sorted(set(request) - set(REQUEST_KEYS))]
    found += ["requests[%d].%s: missing" % (index, key) for key in REQUEST_KEYS if key not in request]
    for key in REQUEST_KEYS:
        problem = _REQUEST_CHECKS[key](request[key]) if key in request else None
        if problem:
            found.append("requests[%d].%s: %s" % (index, key, problem))
    return found


def problems(document, uid, account_name):
    """Every reason ``document`` may not be written as ``uid``'s queue file (empty: it may)."""
    found = ["%s: unknown key" % key for key in sorted(set(document) - set(DOCUMENT_KEYS))]
    found += ["%s: missing" % key for key in DOCUMENT_KEYS if key not in document]
    if "version" in document and document["version"] != 1:
        found.append("version: must be 1")
    if "uid" in document and document["uid"] != uid:
        found.append("uid: must be the command's uid %d" % uid)
    if "user" in document and document["user"] != account_name:
        shown = ascii(document["user"])[:80]
        found.append("user: %s is not uid %d's name on this node (%s)" % (shown, uid, account_name))
    if "updated_at" in document and not (status.is_int(document["updated_at"]) and document["updated_at"] >= 0):
        found.append("updated_at: must be a non-negative integer")
    requests = document.get("requests", [])
    if not isinstance(requests, list) or len(requests) > MAX_REQUESTS:
        return found + ["requests: must be a list of at most %d requests" % MAX_REQUESTS]
    for index, request in enumerate(requests):
        found += _request_problems(index, request)
    ids = [request.get("id") for request in requests if isinstance(request, dict)]
    if len(set(map(repr, ids))) != len(ids):
        found.append("requests: an id is repeated")
    return found


def _clock(value):
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(value))


def summary(requests):
    """One line for the login banner about the user's most advanced active request; empty when none."""
    for state in ACTIVE:
        for request in requests:
            if request["state"] != state:
                continue
            gpus = ", ".join("%s GPU %d (%s)" % (g["node"], g["index"], g["model"]) for g in request["gpus"])
            if state == "granted":
                until = " until %s" % _clock(request["ends"]) if request["ends"] is not None else ""
                return "request %d granted: %s%s" % (request["id"], gpus, until)
            if state == "offered":
                expires = _clock(request["offer_expires"]) if request["offer_expires"] is not None else "soon"
                return "request %d offered: %s; claim it by %s (gpu-request --claim %d)" % (
                    request["id"], gpus, expires, request["id"])
            eta = ""
            if request["eta"] is not None:
                eta = ", about %s (%s)" % (_clock(request["eta"]), request["eta_basis"] or "estimate")
            position = "" if request["position"] is None else " at position %d" % request["position"]
            return "request %d queued%s%s" % (request["id"], position, eta)
    return ""


def _value(value):
    if value is None:
        return ""
    if isinstance(value, list):
        return ",".join("%s:%d:%s" % (gpu["node"], gpu["index"], gpu["model"]) for gpu in value)
    return str(value)


def render(document):
    """The file's bytes: the document's scalars, ``active``, ``summary``, then ``request.ID.KEY=value`` lines
    (``gpus`` as ``node:index:model`` joined by commas; null is the empty value)."""
    requests = document["requests"]
    active = sum(1 for request in requests if request["state"] in ACTIVE)
    lines = ["%s=%s" % (key, document[key]) for key in ("version", "user", "uid", "updated_at")]
    lines += ["active=%d" % active, "summary=%s" % summary(requests), "requests=%s" % ",".join(
        str(request["id"]) for request in requests)]
    for request in requests:
        lines += ["request.%d.%s=%s" % (request["id"], key, _value(request[key])) for key in REQUEST_KEYS[1:]]
    return "".join(line + "\n" for line in lines).encode("utf-8")
