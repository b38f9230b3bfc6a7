"""The caller itself, and bearer tokens (admin only): issue, list, revoke. Each change is audited in the
transaction that makes it."""

from __future__ import annotations

from typing import Any

from api import audit, render, tokens
from api.errors import not_found, unprocessable
from api.operation import Call
from api.services import aware, services


def me(call: Call) -> Any:
    p = call.principal
    assert p is not None
    return {"token_id": p.token_id, "name": p.name, "role": p.role, "user": p.billing_user}


def list_tokens(call: Call) -> Any:
    with services(call).read() as conn:
        return [render.token(t) for t in tokens.list_all(conn)]


def create_token(call: Call) -> Any:
    svc, b = services(call), call.body
    role, user = b["role"], b.get("user")
    if (role == "user") != (user is not None):
        raise unprocessable("invalid_token_request", "a 'user' token needs 'user'; other roles take none")
    if user is not None:
        svc.ledger.get_user(user)   # UnknownUser -> 404 before anything is written
    expires = aware(b["expires_at"], "expires_at") if b.get("expires_at") is not None else None
    with svc.write() as conn:
        issued = tokens.issue(conn, name=b["name"], role=role, billing_user=user, expires_at=expires,
                              created_by=call.actor)
        info = render.token(issued.info)
        audit.record(conn, actor=call.actor, action="token.create", target=f"token:{issued.info.id}", before=None,
                     after=info, request_id=call.request_id)
    return {"token": issued.token, **info}


def revoke_token(call: Call) -> Any:
    token_id = call.params["token_id"]
    svc = services(call)
    with svc.write() as conn:
        before = tokens.get(conn, token_id)
        if before is None:
            raise not_found("token", str(token_id))
        after = tokens.revoke(conn, token_id)
        assert after is not None
        audit.record(conn, actor=call.actor, action="token.revoke", target=f"token:{token_id}",
                     before=render.token(before), after=render.token(after), request_id=call.request_id)
    svc.tokens.forget(after.prefix)
    return render.token(after)
