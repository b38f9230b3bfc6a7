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


def _param(p: Any, where: str) -> dict[str, Any]:
    out = {"name": p.name, "in": where, "required": p.required or where == "path", "schema": dict(p.schema)}
    if p.description:
        out["description"] = p.description
    return out


def _operation(op: Operation) -> dict[str, Any]:
    params = [_param(p, "path") for p in op.path_params] + [_param(p, "query") for p in op.query]
    if op.money:
        params.append({"name": "Idempotency-Key", "in": "header", "required": True, "schema": s.IDEMPOTENCY_KEY,
                       "description": "a replay with the same key returns the original result; other content: 409"})
    roles = sorted(op.roles) + (["user (own objects only)"] if op.own else [])
    success: dict[str, Any] = {"description": "success",
                               "content": {media: {"schema": dict(op.response)} for media in op.media_types}}
    if op.response_headers:
        success["headers"] = {name: {"description": text, "schema": {"type": "string"}}
                              for name, text in op.response_headers}
    doc: dict[str, Any] = {
        "operationId": op.operation_id,
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
        doc["requestBody"] = {"required": True, "content": {"application/json": {"schema": dict(op.body)}}}
    return doc


def document(operations: Sequence[Operation], version: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {"title": "gpuledger API", "version": version,
                 "description": "GPU-cluster accounting: ledger, usage, nodes and enforcement. Amounts are decimal "
                                "strings in the configured currency with six decimals."},
        "paths": paths,
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
                       "schemas": {"Error": s.ERROR}},
    }
