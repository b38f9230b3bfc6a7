"""The enforcement and settings pages (issue #14, admin item 4): decisions with node and user filters and
cursor paging, overrides (list and a create form with an end), settings versions with their reasons and the
form for a new one. Reads and writes are the API handlers' (``api.handlers.cluster``, ``api.handlers.settings``),
each form checked against its API row's body schema first (``nodes.api_body``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from starlette.responses import Response

from api.console.pages.nodes import api_body, as_call, with_times
from api.console.web import page_of, see_other
from api.errors import unprocessable
from api.handlers import cluster, settings
from api.operation import Call
from api.services import services
from control.settings import KNOWN_KEYS, QUEUE_HOURS_KEYS, QUEUE_INTEGERS

ACTIONS = ("exempt", "lift", "apply")
# The queue's keys the form offers (the shares, an object, are set through PUT /v1/settings).
QUEUE_FIELDS = (*QUEUE_INTEGERS, *QUEUE_HOURS_KEYS)


def enforcement(call: Call) -> Response:
    page, p = page_of(call), call.params
    filters = {k: p[k] for k in ("node", "billing_user") if p.get(k)}
    found = cluster.decisions(as_call(call, {**filters, **{k: p[k] for k in ("cursor", "limit") if k in p}}))
    decisions = [with_times(d, ("at",)) for d in found["items"]]
    more = None if found["next_cursor"] is None else "/enforcement?" + urlencode(
        {**filters, "cursor": found["next_cursor"]})
    overrides = [with_times(o, ("until", "at")) for o in cluster.list_overrides(as_call(call, {}))]
    return page.render("ops/enforcement.html", decisions=decisions, more=more, overrides=overrides,
                       node=p.get("node", ""), billing_user=p.get("billing_user", ""), actions=ACTIONS)


def _local_until(call: Call, value: str) -> str | None:
    """A ``datetime-local`` field is a wall-clock time in the ledger's time zone; the API takes an offset."""
    if not value:
        return None
    try:
        naive = datetime.fromisoformat(value)
    except ValueError:
        raise unprocessable("invalid_time", "until: not a date and time", field="until") from None
    return naive.replace(tzinfo=services(call).ledger.config.timezone).isoformat()


def create_override(call: Call) -> Response:
    """As POST /v1/enforcement/overrides; an empty ``until`` is an override without an end."""
    form = call.body
    body: dict[str, Any] = {"user": form.get("user", ""), "action": form.get("action", ""),
                            "reason": form.get("reason", "")}
    until = _local_until(call, form.get("until", ""))
    if until is not None:
        body["until"] = until
    cluster.create_override(as_call(call, {}, api_body("create_override", body)))
    return see_other("/enforcement")


def settings_page(call: Call) -> Response:
    page = page_of(call)
    current = settings.get_settings(as_call(call, {}))
    versions = [with_times(v, ("at",)) for v in settings.history(as_call(call, {}))]
    return page.render("ops/settings.html", current=current, versions=versions, keys=KNOWN_KEYS,
                       queue_fields=QUEUE_FIELDS)


def put_settings(call: Call) -> Response:
    """As PUT /v1/settings: the fields left empty keep the version in force's values."""
    form = call.body
    body: dict[str, Any] = {"reason": form.get("reason", "")}
    for key in ("tier_warning", "tier_limited", "tier_blocked"):
        if form.get(key):
            body[key] = form[key].strip()
    for key in ("kill_grace_seconds", *QUEUE_INTEGERS):
        if form.get(key):
            if not form[key].strip().isdigit():
                raise unprocessable("validation_error", f"{key}: a whole number", field=key)
            body[key] = int(form[key])
    for key in QUEUE_HOURS_KEYS:
        if form.get(key):
            body[key] = form[key].strip()
    if form.get("dry_run") in ("true", "false"):
        body["dry_run"] = form["dry_run"] == "true"
    settings.put_settings(as_call(call, {}, api_body("put_settings", body)))
    return see_other("/settings")
