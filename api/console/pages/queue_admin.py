"""The GPU queue for admins, operators and auditors (issue #15; docs/queue.md, "API, CLI and console"): every live
request, filtered by user, state, model and node and sorted by position; one request with its admin actions; and
the boost, cancel, extend and approve forms (admins and operators), each with a required reason and an
idempotency key made when the form was rendered, so a double submit records one action.

Reads are the API's handlers (``api.handlers.queue``); each form runs its API operation
(``api.console.pages.operate``: the same body schema, the same handler, the session's token as the actor recorded
in ``control.queue_action``). A refused action shows the request's page again with the reason and what was sent."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from starlette.responses import Response

from api.console.i18n import Formats
from api.console.pages import operate
from api.console.pages.nodes import as_call, with_times
from api.console.pages.queue import shown
from api.console.web import page_of, see_other
from api.errors import ApiError, unprocessable
from api.handlers import queue
from api.operation import Call
from api.services import services
from control.queue.records import Policy, State

# "position": the queue's order (queued by position, then offers, then grants, each by id); the others by field.
SORTS = ("position", "created", "user")
FILTERS = ("user", "state", "model", "node")
STATES = tuple(s.value for s in State)
_STAGE = {"queued": 0, "offered": 1, "granted": 2}
# The list's page size: 500 live requests as one page were 670 kB of HTML (each row carries its action forms)
# and 100 ms (p50) to serve.
QUEUE_ROWS = 100


def _sort_key(sort: str) -> Any:
    if sort == "created":
        return lambda r: (r["created_at"], r["id"])
    if sort == "user":
        return lambda r: (r["user"], r["id"])
    # A request filed since the last tick has no position yet: after those that have one.
    return lambda r: (_STAGE.get(r["state"], 3), r["position"] is None, r["position"] or 0, r["id"])


def listing(call: Call) -> Response:
    page, p = page_of(call), call.params
    filters = {k: p[k] for k in FILTERS if p.get(k)}
    sort = p.get("sort") or "position"
    found = sorted((shown(r) for r in queue.list_requests(as_call(call, filters))), key=_sort_key(sort))
    pages = max(1, -(-len(found) // QUEUE_ROWS))
    number = min(p.get("page") or 1, pages)
    return page.render("queue/admin.html", requests=found[(number - 1) * QUEUE_ROWS:number * QUEUE_ROWS],
                       matching=len(found), page_number=number, pages=pages, first=(number - 1) * QUEUE_ROWS + 1,
                       filters={k: p.get(k) or "" for k in FILTERS}, sort=sort, sorts=SORTS, states=STATES,
                       kept=urlencode({**filters, "sort": sort}), key=operate.new_key(), policy=_policy(call))


def _policy(call: Call) -> Policy:
    """The queue's policy in force (the forms' bounds: the boost cap, the longest lease)."""
    with services(call).read() as conn:
        return queue.policy(call, conn)


def _action(a: Mapping[str, Any], fmt: Formats) -> dict[str, Any]:
    """One recorded action; a lease end it moved (``ends``, stored as text) shown in the lab's zone too."""
    def values(side: Mapping[str, Any]) -> dict[str, Any]:
        return {k: fmt.datetime(datetime.fromisoformat(v)) if k == "ends" and isinstance(v, str) else v
                for k, v in side.items()}

    return {**with_times(a, ("at",)), "before": values(a["before"]), "after": values(a["after"])}


def _detail(call: Call, status: int = 200, error: str | None = None, sent: Mapping[str, str] | None = None,
            verb: str | None = None) -> Response:
    page = page_of(call)
    found = queue.get_request(as_call(call, {"request_id": call.params["request_id"]}))
    actions = [_action(a, page.formats) for a in found.pop("actions")]
    acted = call.params.get("acted")
    return page.render("queue/request.html", status, request=shown(found), actions=actions, acted=acted,
                       key=operate.new_key(), policy=_policy(call), error=error, sent=sent or {}, verb=verb)


def detail(call: Call) -> Response:
    return _detail(call)


def _body(verb: str, form: Mapping[str, str]) -> dict[str, Any]:
    """The form's fields as the API row's body: the reason always, and the verb's own number."""
    body: dict[str, Any] = operate.fields(form, "reason")
    if verb == "boost":
        given = form.get("boost_hours", "").strip()
        if not given.isdigit():
            raise unprocessable("validation_error", "boost_hours: a whole number of hours", field="boost_hours")
        body["boost_hours"] = int(given)
    if verb == "extend":
        body.update(operate.fields(form, "hours"))
    return body


def _act(call: Call, verb: str) -> Response:
    """As POST /v1/gpu-requests/{id}/VERB; then the request's page, which shows the recorded action."""
    try:
        done = operate.run(call, f"{verb}_gpu_request", _body(verb, call.body))
    except ApiError as err:
        return _detail(call, err.status, err.message, call.body, verb)
    return see_other(f"/admin/gpu-queue/{call.params['request_id']}?acted={done['action']['id']}")


def boost(call: Call) -> Response:
    return _act(call, "boost")


def cancel(call: Call) -> Response:
    return _act(call, "cancel")


def extend(call: Call) -> Response:
    return _act(call, "extend")


def approve(call: Call) -> Response:
    return _act(call, "approve")
