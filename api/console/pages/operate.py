"""A console form runs its API operation: the same row of the route table, its body checked against the same
schema, its handler called with the session's principal (so the same actor is audited) and, for money, the
form's idempotency key. One code path for the form and the API, never a second implementation."""

from __future__ import annotations

import functools
import secrets
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from jsonschema import Draft202012Validator

from api.console.web import page_of
from api.errors import bad_request, unprocessable
from api.operation import Call, Operation
from api.schemas import IDEMPOTENCY_KEY
from api.services import services
from api.tokens import Principal

_KEY = Draft202012Validator(IDEMPOTENCY_KEY)   # the API's own rule for an Idempotency-Key
KEY_FIELD = "idempotency_key"


def new_key() -> str:
    """The key a money form carries from the moment it is rendered: a double submit sends it twice, and the
    ledger posts once."""
    return "console-" + secrets.token_hex(16)


@functools.cache
def _operation(operation_id: str) -> tuple[Operation, Draft202012Validator | None]:
    from api.routes import OPERATIONS  # the route table imports the pages: look it up at first use

    op = next(o for o in OPERATIONS if o.operation_id == operation_id and not o.page)
    return op, Draft202012Validator(op.body) if op.body is not None else None


def principal_of(call: Call) -> Principal:
    """The API principal of the session's token. Console sessions that may change anything are made from a
    token (``WebPrincipal.of_token``), whose actor is ``api:NAME``: the same actor the API would audit."""
    web = page_of(call).principal
    assert web is not None and web.token_id is not None and web.actor.startswith("api:")
    return Principal(web.token_id, web.actor.removeprefix("api:"), web.role, web.billing_user)


def form_key(call: Call) -> str:
    """The idempotency key the form was rendered with (:func:`new_key`); a form without a valid one is refused
    rather than run unprotected."""
    key = call.body.get(KEY_FIELD)
    if key is None or not _KEY.is_valid(key):
        raise bad_request("idempotency_key_required", "the form has lost its idempotency key: open it again")
    return str(key)


def run(call: Call, operation_id: str, body: Mapping[str, Any], params: Mapping[str, Any] | None = None) -> Any:
    """Run API operation ``operation_id`` for this form; its answer is the API's JSON-shaped result."""
    op, validator = _operation(operation_id)
    if validator is not None:
        errors = sorted(validator.iter_errors(dict(body)), key=lambda e: list(e.path))
        if errors:
            where = "/".join(str(p) for p in errors[0].path) or "form"
            raise unprocessable("validation_error", f"{where}: {errors[0].message}", field=where)
    key = form_key(call) if op.money or op.idempotent else None
    return op.handler(Call(principal_of(call), {**call.params, **(params or {})}, body, call.request_id, key,
                           call.services, call.console))


def fields(form: Mapping[str, str], *names: str) -> dict[str, str]:
    """The non-empty text fields among ``names`` (an empty field means 'not given', as a JSON body leaves it out)."""
    return {n: form[n].strip() for n in names if form.get(n, "").strip()}


def local_time(call: Call, form_field: str) -> str | None:
    """A form's date or date-and-time field (browsers send them without a zone) as the ISO time the API takes,
    read in the ledger's time zone; None when left empty."""
    text = call.body.get(form_field, "").strip()
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise unprocessable("validation_error", f"{form_field}: not a date or time", field=form_field) from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=services(call).ledger.config.timezone)
    return value.isoformat()
