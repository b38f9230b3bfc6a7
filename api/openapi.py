"""The OpenAPI 3.1 document, generated from the route table (so it cannot drift from what is served)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from api import schemas as s
from api.operation import Operation

ERROR_STATUSES = {"400": "malformed request", "401": "missing, unknown, expired or revoked token",
                  "403": "the token's role may not do this", "404": "no such object",
                  "405": "method not allowed", "409": "refused (conflict with the ledger's state)",
                  "422": "invalid input", "429": "too many failed authentications (see Retry-After)",
                  "503": "database unavailable"}


_ERROR_REF = {"$ref": "#/components/schemas/Error"}

# One tag per area, in the order a reader meets them; an operation's area is its handler's module.
TAGS = {"money": "Recharges, grants, adjustments, refunds, reversals; balances and statements",
        "people": "Billing users, projects and the node account map",
        "reports": "Usage, journal entries, trial balance, revenue; price versions",
        "exports": "The ledger of a period as CSV, hledger or Beancount",
        "cluster": "Nodes, connection tests, enforcement decisions and overrides",
        "settings": "Operational settings versions the controller reads",
        "queue": "GPU requests: the caller's own, the admins' list and actions, the idle-held report",
        "access": "Tokens and the calling token",
        "system": "Health, metrics and this document"}
_AREA_OF_MODULE = {"connections": "cluster", "app": "system"}


def area(op: Operation) -> str:
    """The operation's tag: its handler module's name (``api.handlers.money`` -> money)."""
    module = op.handler.__module__.rsplit(".", 1)[-1]
    return _AREA_OF_MODULE.get(module, module)


def _named(schema: Any, skip: str | None = None) -> Any:
    """``schema`` with every copy of a named component (``api.schemas.COMPONENTS``) replaced by its $ref, at
    any depth; ``skip`` is the component being defined (its own root stays inline)."""
    if isinstance(schema, dict):
        for name, component in s.COMPONENTS.items():
            if name != skip and schema == component:
                return {"$ref": f"#/components/schemas/{name}"}
        return {k: _named(v) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_named(v) for v in schema]
    return schema


def _param(p: Any, where: str) -> dict[str, Any]:
    out = {"name": p.name, "in": where, "required": p.required or where == "path", "schema": dict(p.schema)}
    if p.description:
        out["description"] = p.description
    return out


def _operation(op: Operation) -> dict[str, Any]:
    params = [_param(p, "path") for p in op.path_params] + [_param(p, "query") for p in op.query]
    if op.money or op.idempotent:
        params.append({"name": "Idempotency-Key", "in": "header", "required": op.money, "schema": s.IDEMPOTENCY_KEY,
                       "description": "a replay with the same key returns the original result; other content: 409"})
    roles = sorted(op.roles) + (["user (own objects only)"] if op.own else [])
    success: dict[str, Any] = {"description": "success",
                               "content": {media: {"schema": _named(op.response)} for media in op.media_types}}
    if op.response_headers:
        success["headers"] = {name: {"description": text, "schema": {"type": "string"}}
                              for name, text in op.response_headers}
    doc: dict[str, Any] = {
        "operationId": op.operation_id,
        "tags": [area(op)],
        "summary": op.summary,
        "description": "Public." if op.public else f"Roles: {', '.join(roles)}.",
        "parameters": params,
        "security": [] if op.public else [{"bearer": []}],
        "responses": {
            str(op.status): success,
            **{code: {"description": text, "content": {"application/json": {"schema": _ERROR_REF}}}
               for code, text in ERROR_STATUSES.items()},
        },
    }
    if op.body is not None:
        doc["requestBody"] = {"required": True, "content": {"application/json": {"schema": _named(op.body)}}}
    return doc


def document(operations: Sequence[Operation], version: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        if op.page:   # the console's HTML pages share the route table (one authorization table), not this document
            continue
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {"title": "gpuledger API", "version": version,
                 "description": "GPU-cluster accounting: ledger, usage, nodes and enforcement. Amounts are decimal "
                                "strings in the configured currency with six decimals."},
        # Relative: the document is served by the API it describes (and /docs tries requests against it).
        "servers": [{"url": "/", "description": "this server"}],
        "tags": [{"name": name, "description": text} for name, text in TAGS.items()],
        "paths": paths,
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
                       "schemas": {name: _named(schema, skip=name) for name, schema in s.COMPONENTS.items()}},
    }
