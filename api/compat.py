"""The hit-aiot-ops compatibility shim: the old node-side scripts' routes, answered during a move
(docs/migrating.md, docs/runbook.md "Moving off hit-aiot-ops"). Off unless ``GPULEDGER_COMPAT_HIT=true``.

Only the addresses in ``GPULEDGER_COMPAT_HIT_NODES`` (``node=address,...``: the gpuledger node name and the address
its old hooks call from) are answered; any other client gets 403. The calling node is who the client address
says it is, so the Linux name in a path is resolved through that node's mappings (``ledger.directory.resolve``:
the node's, then ``*``, then a billing user of the same name), and nothing ever creates a user (the old balance
route gave every unknown name 100 credit). Bodies are compact JSON, as the old scripts grep them.

* ``GET /api/users/{username}/balance``: exactly ``{"username","balance","status"}`` with the old four tier
  strings, HTTP 200, under the thresholds the controller enforces. A Linux name nobody maps answers 404: the old
  ``check_quota.sh`` then falls back on its flag file, which is the old behaviour for an unknown answer.
* ``GET /api/registry/resolve?local_username=``: ``{"registered":...,"billing_username":...,"whitelisted":false}``
  (the old ``node_id`` parameter is ignored: the address names the node).
* ``POST /api/gpu/request``: 501. The GPU queue takes requests only from the node's drop box, where the kernel
  names the user (docs/gpu-request.md); the old route trusted a ``username`` in the body.
* ``GET /healthz`` is the API's own (public) route.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from api.handlers.settings import thresholds_in_force
from api.operation import Call
from api.services import Services
from ledger import directory
from ledger.environ import Config
from ledger.errors import ConfigError, LedgerUnavailable
from ledger.money import format_amount


@dataclass(frozen=True)
class CompatConfig:
    enabled: bool = False
    nodes: Mapping[str, str] = field(default_factory=dict)   # client address -> gpuledger node name

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> CompatConfig:
        env = Config(environ)
        enabled = bool(env.boolean("COMPAT_HIT", False))
        nodes: dict[str, str] = {}
        for item in env.items("COMPAT_HIT_NODES"):
            node, sep, address = item.partition("=")
            if not sep or not node.strip() or not address.strip():
                raise ConfigError(env.key("COMPAT_HIT_NODES"), f"node=address expected, got {item!r}")
            nodes[address.strip()] = node.strip()
        if enabled and not nodes:
            raise ConfigError(env.key("COMPAT_HIT_NODES"), "the shim answers only node addresses: name them")
        return cls(enabled, nodes)


def _json(document: Mapping[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(document, separators=(",", ":")), status, media_type="application/json")


def routes(svc: Services, config: CompatConfig) -> list[BaseRoute]:
    """The shim's routes, or none when it is off."""
    if not config.enabled:
        return []

    def node_of(request: Request) -> str | None:
        return None if request.client is None else config.nodes.get(request.client.host)

    def billing_user(node: str, linux_user: str) -> str | None:
        with svc.read() as conn:
            return directory.resolve(conn, [(node, linux_user)]).get((node, linux_user))

    def balance_of(node: str, linux_user: str) -> str | None:
        user = billing_user(node, linux_user)
        if user is None:
            return None
        thresholds = thresholds_in_force(Call(None, {}, {}, uuid.uuid4().hex, None, svc))
        held = svc.ledger.standing(user, thresholds)
        # the balance as a JSON number written from the exact decimal text (never through a float), as the old
        # controller's DECIMAL came out
        return (f'{{"username":{json.dumps(linux_user)},"balance":{format_amount(held.available)},'
                f'"status":{json.dumps(held.tier.value)}}}')

    async def guarded(request: Request, answer: Callable[[str], Awaitable[Response]]) -> Response:
        node = node_of(request)
        if node is None:
            return _json({"error": "this address is not a configured node"}, 403)
        try:
            return await answer(node)
        except LedgerUnavailable:
            return _json({"error": "the database is unavailable"}, 503)

    async def balance(request: Request) -> Response:
        async def answer(node: str) -> Response:
            name = request.path_params["username"]
            found = await to_thread.run_sync(balance_of, node, name, limiter=svc.threads)
            if found is None:
                return _json({"error": f"{name} is not mapped on {node}"}, 404)
            return Response(found, 200, media_type="application/json")
        return await guarded(request, answer)

    async def resolve(request: Request) -> Response:
        async def answer(node: str) -> Response:
            name = request.query_params.get("local_username", "")
            user = await to_thread.run_sync(billing_user, node, name, limiter=svc.threads) if name else None
            return _json({"registered": user is not None, "billing_username": user or "", "whitelisted": False})
        return await guarded(request, answer)

    async def gpu_request(request: Request) -> Response:
        async def answer(node: str) -> Response:
            return _json({"error": "not implemented: ask with gpu-request on the node (the queue takes requests"
                          " only where the kernel names the user, docs/gpu-request.md)"}, 501)
        return await guarded(request, answer)

    return [Route("/api/users/{username}/balance", balance, methods=["GET"]),
            Route("/api/registry/resolve", resolve, methods=["GET"]),
            Route("/api/gpu/request", gpu_request, methods=["POST"])]
