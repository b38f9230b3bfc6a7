"""API tokens, on the same page as the console sessions made from them (/sessions): issue one (its secret is
shown once, on the page that answers the form, and never again: only its hash is kept) and revoke one (its
console sessions end at their next request). The forms run the API's operations (POST /v1/tokens, DELETE
/v1/tokens/ID)."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from api.console.pages import operate
from api.console.web import page_of, see_other
from api.operation import Call


def issue(call: Call) -> Response:
    body: dict[str, Any] = operate.fields(call.body, "name", "role", "user")
    expires = operate.local_time(call, "expires_at")
    if expires is not None:
        body["expires_at"] = expires
    issued = operate.run(call, "create_token", body)
    # Rendered, not redirected: the secret must not travel in a URL or be stored to be shown later.
    return page_of(call).render("admin/token_issued.html", issued=issued)


def revoke(call: Call) -> Response:
    operate.run(call, "revoke_token", {})
    return see_other("/sessions")
