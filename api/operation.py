"""One API operation as data: method, path, who may call it, what it takes and returns, and its handler.
The route table (``api.routes.OPERATIONS``) is a tuple of these; the app, the OpenAPI document and the
authorization matrix test are all generated from it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from api.tokens import Principal

Schema = Mapping[str, Any]


@dataclass(frozen=True)
class Param:
    """A path or query parameter; values are parsed from text according to ``schema['type']``."""

    name: str
    schema: Schema
    required: bool = False
    description: str = ""


class Owner(Protocol):
    """What an ownership rule reads of a caller (an API token's principal or a console session's)."""

    @property
    def billing_user(self) -> str | None: ...


@dataclass(frozen=True)
class Own:
    """Ownership rule for role ``user``: the parameter ``param`` must name the token's billing user
    (as ``NAME`` or, for ``wallet=True``, ``user:NAME``). A query parameter left out is filled in with it.
    ``charged=True`` also lets a ``project:NAME`` wallet through, which the handler must then refuse unless
    it is the wallet the user is charged to (that takes the database, which binding does not read)."""

    param: str
    wallet: bool = False
    charged: bool = False

    def bind(self, principal: Owner, params: dict[str, str]) -> dict[str, str] | None:
        """The parameters to use, or None when the principal does not own the object."""
        own = principal.billing_user
        if own is None:
            return None
        value = params.get(self.param)
        if value is None:
            return {**params, self.param: own}
        allowed = {own, f"user:{own}"} if self.wallet else {own}
        if value in allowed or (self.charged and value.startswith("project:")):
            return params
        return None


@dataclass(frozen=True)
class Call:
    """What a handler gets: the caller, validated parameters and body, and the request id."""

    principal: Principal | None
    params: Mapping[str, Any]
    body: Mapping[str, Any]
    request_id: str
    idempotency_key: str | None
    services: Any
    console: Any = None

    @property
    def actor(self) -> str:
        return self.principal.actor if self.principal else "anonymous"


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    summary: str
    handler: Callable[[Call], Any]
    response: Schema
    roles: frozenset[str] = frozenset()
    own: Own | None = None
    public: bool = False
    path_params: tuple[Param, ...] = ()
    query: tuple[Param, ...] = ()
    body: Schema | None = None
    status: int = 200
    money: bool = False
    # Takes an optional Idempotency-Key (money operations require one): a retry with the same key changes
    # nothing a second time and answers as the first did.
    idempotent: bool = False
    # The success response's content types, for the OpenAPI document (an export's depends on its format).
    media_types: tuple[str, ...] = ("application/json",)
    # Headers of the success response the handler sets itself (name, description), for the OpenAPI document.
    response_headers: tuple[tuple[str, str], ...] = ()
    # A console page or form (api.console): HTML, a session cookie instead of a bearer token, CSRF on POST,
    # and left out of the OpenAPI document. Its handler gets a Call whose ``console`` is the page's request.
    page: bool = False

    def allowed_roles(self) -> frozenset[str]:
        """Roles that may call it at all (role ``user`` only on its own objects when ``own`` is set)."""
        return self.roles | ({"user"} if self.own else frozenset())
