"""Errors the API answers with: a stable ``code``, an HTTP status, a human message and the data behind it.

Ledger errors are translated here, in one place, so every route renders them the same way."""

from __future__ import annotations

from typing import Any

from ledger.errors import LedgerError, LedgerUnavailable

# Messages and details name the values they refuse, and a value can be as long as the body: an answer
# shows at most this much of each (a 200 MB field gave a 200 MB 422).
MAX_MESSAGE = 500
MAX_DETAIL = 200


def clip(text: str, limit: int) -> str:
    """``text`` if at most ``limit`` characters, else its start and end around a note of what was left out
    (the end of a message says what was wrong with the value at its start)."""
    if len(text) <= limit:
        return text
    head, tail = limit * 3 // 4, limit // 8
    return f"{text[:head]}... ({len(text) - head - tail} characters left out) ...{text[len(text) - tail:]}"


# Ledger error code -> HTTP status; anything not listed is a refused operation on valid input (409).
_LEDGER_STATUS = {
    "unknown_user": 404,
    "unknown_project": 404,
    "unknown_wallet": 404,
    "unknown_entry": 404,
    "invalid_name": 422,
    "invalid_characters": 422,
    "malformed_amount": 422,
    "non_positive_amount": 422,
    "invalid_price": 422,
    "ledger_error": 422,
}


class ApiError(Exception):
    """An error response: ``status`` and ``code`` are stable, ``details`` is JSON-ready data.
    (Not a frozen dataclass: Python assigns ``__traceback__``/``__cause__`` on raise.)"""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        message = clip(message, MAX_MESSAGE)
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = {k: clip(v, MAX_DETAIL) if isinstance(v, str) else v for k, v in (details or {}).items()}
        self.headers = headers or {}

    def body(self, request_id: str) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details,
                          "request_id": request_id}}


def from_ledger(exc: LedgerError, currency: str | None = None) -> ApiError:
    """The ledger's error as an API error; with ``currency``, amounts in the message are in it (``details``
    keep the exact micro-units for programs)."""
    if isinstance(exc, LedgerUnavailable):
        return unavailable()
    message = exc.message if currency is None else exc.describe(currency)
    return ApiError(_LEDGER_STATUS.get(exc.code, 409), exc.code, message, _jsonable(exc.details))


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(v, (str, int, bool, float, type(None))) else str(v) for k, v in details.items()}


def bad_request(code: str, message: str, **details: Any) -> ApiError:
    return ApiError(400, code, message, details)


def unprocessable(code: str, message: str, **details: Any) -> ApiError:
    return ApiError(422, code, message, details)


def not_found(what: str, name: str) -> ApiError:
    return ApiError(404, f"unknown_{what}", f"unknown {what} {name!r}", {"name": name})


# Constructors, not shared instances: raising one exception object again and again appends every raise's frames
# to its __traceback__, which kept each request's frames alive (+6 KB a 401 or 403, never freed).
def unauthenticated() -> ApiError:
    return ApiError(401, "unauthenticated", "a valid bearer token is required",
                    headers={"WWW-Authenticate": 'Bearer realm="gpuledger"'})


def forbidden() -> ApiError:
    return ApiError(403, "forbidden", "this token's role may not do this")


def unavailable() -> ApiError:
    """The database could not be reached. The driver's words (host, port, role) go to the log only."""
    return ApiError(503, "ledger_unavailable", "the database is unavailable; retry shortly",
                    headers={"Retry-After": "5"})


def payload_too_large(limit: int) -> ApiError:
    return ApiError(413, "body_too_large", f"the request body exceeds {limit} bytes", {"max_body_bytes": limit})
