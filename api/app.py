"""The Starlette application: one endpoint per row of the route table, each running the same pipeline:
authenticate, authorize (role or ownership), parse and validate input, run the handler in a thread,
render JSON. Every error becomes a JSON body with a stable code; bad input is never a 5xx."""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date
from typing import Any

from anyio import CapacityLimiter, to_thread
from jsonschema import Draft202012Validator
from prometheus_client import start_http_server
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import docs, openapi, tokens
from api.compat import CompatConfig
from api.compat import routes as compat_routes
from api.config import ApiConfig
from api.console import web
from api.console.static import ConsoleStatic
from api.errors import (
    ApiError,
    bad_request,
    forbidden,
    from_ledger,
    payload_too_large,
    unauthenticated,
    unprocessable,
)
from api.metrics import ApiMetrics
from api.operation import Call, Operation, Param
from api.ratelimit import FailedAuthLimiter
from api.routes import OPERATIONS
from api.schemas import IDEMPOTENCY_KEY
from api.services import Services
from api.tokencache import TokenCache
from ledger.config import LedgerConfig
from ledger.errors import InvalidCharacters, LedgerError, LedgerUnavailable
from ledger.service import Ledger
from ledger.text import check_text

log = logging.getLogger("gpuledger.api")
VERSION = "1.0.0"
_INT = re.compile(r"-?[0-9]{1,19}")
_KEY = Draft202012Validator(IDEMPOTENCY_KEY)


@functools.cache
def _document() -> dict[str, Any]:
    return openapi.document(all_operations(), VERSION)


OPENAPI = Operation("GET", "/openapi.json", "openapi", "This OpenAPI 3.1 document", lambda call: _document(),
                    {"type": "object"}, public=True)


def all_operations() -> tuple[Operation, ...]:
    """The route table plus the document describing it."""
    return (*OPERATIONS, OPENAPI)


def create_app(ledger: Ledger, config: ApiConfig | None = None, *, close_ledger: bool = False,
               compat: CompatConfig | None = None) -> Starlette:
    """The app over a ``Ledger`` (whose engine also serves the API's own tables). The lead's ``gpuledger run``
    passes its ledger; ``close_ledger`` disposes of it at shutdown."""
    config = config or ApiConfig()
    limiter = FailedAuthLimiter(config.auth_failures, config.auth_window_seconds, config.auth_table_size)
    svc = Services(ledger, config, ApiMetrics(), limiter, TokenCache(config.token_cache_seconds),
                   CapacityLimiter(config.db_threads),
                   FailedAuthLimiter(config.console_login_starts, config.auth_window_seconds, config.auth_table_size))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        metrics_server = None
        if config.metrics_port:
            metrics_server, _ = start_http_server(config.metrics_port, addr=config.metrics_address,
                                                  registry=svc.metrics.registry)
        try:
            yield
        finally:
            if metrics_server is not None:
                metrics_server.shutdown()
                metrics_server.server_close()
            if close_ledger:
                ledger.close()

    async def not_routed(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(ApiError(exc.status_code, code, str(exc.detail), headers=dict(exc.headers or {})),
                      uuid.uuid4().hex)

    by_path: dict[str, dict[str, Any]] = {}
    for op in all_operations():
        by_path.setdefault(op.path, {})[op.method] = _endpoint(op, svc)
    # One Route per path, so a 405 lists every method of the path in Allow.
    routes: list[BaseRoute] = [Route(path, _by_method(endpoints), methods=list(endpoints))
                               for path, endpoints in by_path.items()]
    routes += compat_routes(svc, compat or CompatConfig())   # the old hit-aiot-ops hooks' routes, when turned on
    routes += docs.routes()   # the page over /openapi.json: not an operation of the API it documents
    routes.append(Mount("/static", ConsoleStatic(), name="static"))
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: not_routed},
                     middleware=[Middleware(Hsts)])


HSTS = (b"strict-transport-security", b"max-age=31536000")


class Hsts:
    """``Strict-Transport-Security`` on every response to a request that came over https: uvicorn's own TLS, or a
    trusted proxy's ``X-Forwarded-Proto: https`` (uvicorn sets the scheme from it only for GPULEDGER_API_TRUSTED_
    PROXIES). Plain http gets none: a browser ignores it there, and a lab without TLS must stay reachable. Pure
    ASGI (no BaseHTTPMiddleware), so streamed exports stay streamed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("scheme") != "https":
            await self.app(scope, receive, send)
            return

        async def with_hsts(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), HSTS]}
            await send(message)

        await self.app(scope, receive, with_hsts)


def create_app_from_env(environ: Mapping[str, str] | None = None) -> Starlette:
    env = os.environ if environ is None else environ
    config = ApiConfig.from_env(env)
    return create_app(Ledger.from_config(LedgerConfig.from_env(env), config.session_settings()), config,
                      close_ledger=True, compat=CompatConfig.from_env(env))


def _error(err: ApiError, request_id: str) -> Response:
    return JSONResponse(err.body(request_id), status_code=err.status,
                        headers={**err.headers, "X-Request-Id": request_id})


def _by_method(endpoints: dict[str, Any]) -> Any:
    async def endpoint(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await endpoints[method](request)   # type: ignore[no-any-return]

    return endpoint


@dataclass(frozen=True)
class _Validators:
    """An operation's schemas compiled once (building a validator costs more than running it)."""

    body: Draft202012Validator | None
    params: Mapping[str, Draft202012Validator]

    @classmethod
    def of(cls, op: Operation) -> _Validators:
        return cls(Draft202012Validator(op.body) if op.body is not None else None,
                   {p.name: Draft202012Validator(p.schema) for p in (*op.path_params, *op.query)})


def _endpoint(op: Operation, svc: Services) -> Any:
    validators = _Validators.of(op)

    async def endpoint(request: Request) -> Response:
        request_id = uuid.uuid4().hex
        started = time.perf_counter()
        try:
            response = await _handle(op, svc, validators, request, request_id)
            response.headers["X-Request-Id"] = request_id
        except ApiError as err:
            response = _error(err, request_id)
        except LedgerError as exc:
            if isinstance(exc, LedgerUnavailable):
                log.warning("request %s %s: %s (request id %s)", op.method, op.path, exc.message, request_id)
            response = _error(from_ledger(exc, svc.ledger.config.currency), request_id)
        except Exception:
            log.exception("request %s %s failed (request id %s)", op.method, op.path, request_id)
            response = _error(ApiError(500, "internal_error", "internal error; see the server log"), request_id)
        svc.metrics.observe(op.operation_id, response.status_code, time.perf_counter() - started)
        return response

    return endpoint


async def _handle(op: Operation, svc: Services, validators: _Validators, request: Request,
                  request_id: str) -> Response:
    if op.page:
        return await web.handle(op, svc, request, web.Input(
            functools.partial(_raw_params, op, request), functools.partial(_params, op, validators),
            functools.partial(_read_limited, request, svc.config.max_body_bytes)))
    principal = None if op.public else await _authenticate(svc, request)
    raw = _raw_params(op, request)
    if principal is not None and principal.role not in op.roles:
        bound = op.own.bind(principal, raw) if op.own and principal.role == "user" else None
        if bound is None:
            raise forbidden()
        raw = bound
    params = _params(op, validators, raw)
    body = await _body(validators.body, request, svc.config.max_body_bytes)
    key = request.headers.get("idempotency-key") if op.money or op.idempotent else None
    if op.money and key is None:
        raise bad_request("idempotency_key_required", "money-moving requests need an Idempotency-Key header "
                          "(1-200 of A-Z a-z 0-9 . _ : -)")
    if key is not None and not _KEY.is_valid(key):
        raise bad_request("bad_idempotency_key", "the Idempotency-Key header must be 1-200 of A-Z a-z 0-9 . _ : -")
    call = Call(principal, params, body, request_id, key, svc)
    result = await to_thread.run_sync(op.handler, call, limiter=svc.threads)
    if isinstance(result, Response):
        return result
    return JSONResponse(result, status_code=op.status)


async def _authenticate(svc: Services, request: Request) -> tokens.Principal:
    """The token is checked before the limit: a valid one is accepted from an address that is over it. Anything
    else (no header, another scheme, a malformed or unknown token) is a failure of the address, which
    uvicorn gives as the TCP peer unless a trusted proxy forwarded it (``ApiConfig.uvicorn_options``)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() == "bearer" and tokens.prefix_of(token) is not None:
        principal = svc.tokens.get(token) or await to_thread.run_sync(_lookup, svc, token, limiter=svc.threads)
        if principal is not None:
            return principal
    client = request.client.host if request.client else "unknown"
    wait = svc.limiter.retry_after(client)
    if wait is not None:
        raise ApiError(429, "too_many_failures", "too many failed authentications; retry later",
                       {"retry_after": wait}, {"Retry-After": str(wait)})
    svc.limiter.failed(client)
    svc.metrics.auth_failures.inc()
    raise unauthenticated()


def _lookup(svc: Services, token: str) -> tokens.Principal | None:
    with svc.read() as conn:
        grant = tokens.authenticate(conn, token)
    if grant is None:
        return None
    svc.tokens.put(token, grant)
    return grant.principal


def _params(op: Operation, validators: _Validators, raw: Mapping[str, str]) -> dict[str, Any]:
    return {p.name: v for p in (*op.path_params, *op.query)
            if (v := _parse(p, validators.params[p.name], raw.get(p.name))) is not None}


def _raw_params(op: Operation, request: Request) -> dict[str, str]:
    declared = {p.name for p in op.query}
    raw: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name not in declared:
            raise bad_request("unknown_parameter", f"unknown query parameter {name!r}", name=name)
        if name in raw:
            raise bad_request("repeated_parameter", f"query parameter {name!r} given twice", name=name)
        raw[name] = value
    return {**raw, **request.path_params}


def _parse(param: Param, validator: Draft202012Validator, text: str | None) -> Any:
    """Text -> typed value by the parameter's schema; None when absent and optional."""
    schema = param.schema
    if text is None:
        if param.required:
            raise unprocessable("missing_parameter", f"parameter {param.name!r} is required", name=param.name)
        return schema.get("default")
    _check_text(text, param.name)
    value: Any = text
    if schema.get("type") == "integer":
        if not _INT.fullmatch(text):
            raise unprocessable("invalid_parameter", f"{param.name}: not an integer", name=param.name)
        value = int(text)
    errors = sorted(validator.iter_errors(value), key=lambda e: e.path)
    if errors:
        raise unprocessable("invalid_parameter", f"{param.name}: {errors[0].message}", name=param.name)
    if schema.get("format") == "date":
        try:
            return date.fromisoformat(text)
        except ValueError as exc:
            raise unprocessable("invalid_parameter", f"{param.name}: not a calendar date", name=param.name) from exc
    return value


def _check_text(text: str, where: str) -> None:
    """The ledger's text rule (ledger.text) holds for every string a request carries, whatever table it goes to."""
    try:
        check_text(where, text)
    except InvalidCharacters as exc:
        raise from_ledger(exc) from None


def _walk(value: Any, where: str) -> None:
    if isinstance(value, str):
        _check_text(value, where)
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_text(k, where)
            _walk(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _walk(v, f"{where}[{i}]")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


async def _read_limited(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``limit``: by its Content-Length before a
    byte is read, else (chunked) once that much has arrived."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise payload_too_large(limit)
    parts: list[bytes] = []
    size = 0
    async for part in request.stream():
        size += len(part)
        if size > limit:
            raise payload_too_large(limit)
        parts.append(part)
    return b"".join(parts)


async def _body(validator: Draft202012Validator | None, request: Request, limit: int) -> dict[str, Any]:
    if validator is None:
        return {}
    raw = await _read_limited(request, limit)
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise bad_request("malformed_json", "the body must be a JSON object") from exc
    if not isinstance(body, dict):
        raise bad_request("malformed_json", "the body must be a JSON object")
    _walk(body, "body")
    errors: Sequence[Any] = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.path) or "body"
        code = "unknown_field" if first.validator == "additionalProperties" else "validation_error"
        raise unprocessable(code, f"{where}: {first.message}", field=where)
    return body
