"""A user's GPU requests (issue #15; docs/queue.md, "API, CLI and console"): their live requests and those that
ended in the last 7 days, each with its state, position, ETA and its basis, GPUs, offer expiry and lease end; a
form to file one (models and nodes from the catalog of GPUs the controller last saw) and cancel, claim and
release buttons.

Every read and write is the API's own handler (``api.handlers.queue``), each form checked against its API row's
body schema first (``nodes.api_body``). The identity is the session's billing user, as the API's is the token's:
the forms post to ``/me/...`` and name nobody. A refusal (the intake's, a ``QueueError``, a bad field) shows the
page again with the reason and the form as it was sent, under a fresh idempotency key (a refused request keeps
its key's nonce: the same key with other fields would be refused as reused)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from starlette.responses import Response

from api.console.pages import operate
from api.console.pages.nodes import api_body, as_call, with_times
from api.console.web import page_of, see_other
from api.errors import ApiError, unprocessable
from api.handlers import queue
from api.operation import Call
from api.services import services

# The API's printed instants of a request (api.handlers.queue.shown), read back for the page's zone.
TIMES = ("created_at", "eta", "offer_expires", "granted_at", "ends", "ended_at")
# A checkbox per known model: the form's fields are ``model:NAME`` (the console's form parser keeps one value
# per field name, so a multiple select would send one model).
MODEL_FIELD = "model:"


def shown(request: Mapping[str, Any]) -> dict[str, Any]:
    """One request as the API answers it, its instants and hours typed again for the page's formats."""
    return {**with_times(request, TIMES), "hours": Decimal(request["hours"])}


def requests_of(call: Call, name: str) -> list[dict[str, Any]]:
    """``name``'s live requests and those that ended in the last 7 days, as the API lists them."""
    return [shown(r) for r in queue.list_requests(as_call(call, {"user": name}))]


def _may_queue(role: str) -> bool:
    from api.routes import QUEUERS  # the route table imports the pages: read it when a page is shown

    return role in QUEUERS


def _render(call: Call, name: str, status: int = 200, error: str | None = None,
            sent: Mapping[str, str] | None = None) -> Response:
    page = page_of(call)
    principal = page.principal
    assert principal is not None
    with services(call).read() as conn:
        known = queue.catalog(conn)
        policy = queue.policy(call, conn)
    found = requests_of(call, name)
    live = [r for r in found if r["state"] in ("queued", "offered", "granted")]
    ended = sorted((r for r in found if r not in live), key=lambda r: r["ended_at"] or r["created_at"],
                   reverse=True)
    sent = sent or {}
    return page.render("queue/mine.html", status, name=name, live=live, ended=ended,
                       own=principal.billing_user == name and _may_queue(principal.role),
                       models=sorted(known.models), nodes=sorted(known.per_node), policy=policy,
                       key=operate.new_key(), error=error, sent=sent,
                       sent_models={k.removeprefix(MODEL_FIELD) for k in sent if k.startswith(MODEL_FIELD)})


def requests(call: Call) -> Response:
    services(call).ledger.get_user(call.params["name"])   # UnknownUser -> 404, as the user's other pages
    return _render(call, call.params["name"])


def _run(call: Call, act: Callable[[], object]) -> Response:
    """Run ``act()`` (an API handler's call) and go back to the caller's page; a refusal shows that page with
    it. A session without a billing user gets the API's own refusal (409 no_billing_user) as the error page."""
    principal = page_of(call).principal
    assert principal is not None
    name = principal.billing_user
    try:
        act()
    except ApiError as err:
        if name is None:
            raise
        return _render(call, name, err.status, err.message, call.body)
    return see_other(f"/users/{name}/gpu-requests")


def _count(text: str) -> int | str:
    """The count field as the API's integer; anything else is passed on for the schema to refuse by name."""
    return int(text) if text.strip().isdigit() else text


def file(call: Call) -> Response:
    """As POST /v1/me/gpu-requests with the form's idempotency key: a double submit files one request."""
    form = call.body
    body: dict[str, Any] = {}
    models = [k.removeprefix(MODEL_FIELD) for k in form if k.startswith(MODEL_FIELD)]
    if models:
        body["models"] = models
    for field, value in operate.fields(form, "count", "hours", "node").items():
        body[field] = _count(value) if field == "count" else value

    def act() -> None:
        checked = api_body("file_gpu_request", body)
        queue.file_request(as_call(call, {}, checked, operate.form_key(call)))

    return _run(call, act)


def _request_id(call: Call) -> int:
    rid = call.params["request_id"]
    assert isinstance(rid, int)
    return rid


def cancel(call: Call) -> Response:
    return _run(call, lambda: queue.cancel_mine(as_call(call, {"request_id": _request_id(call)})))


def claim(call: Call) -> Response:
    return _run(call, lambda: queue.claim_mine(as_call(call, {"request_id": _request_id(call)})))


def release(call: Call) -> Response:
    """One grant or offer (the form's ``request_id``), or, without one, every one of the caller's."""
    given = call.body.get("request_id", "").strip()

    def act() -> None:
        if given and not given.isdigit():
            raise unprocessable("validation_error", "request_id: not a request id", field="request_id")
        body = {"request_id": int(given)} if given else {}
        queue.release_mine(as_call(call, {}, api_body("release_my_gpus", body)))

    return _run(call, act)
