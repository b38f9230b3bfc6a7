"""Admin pages of this round: the users list (the landing page of every non-user role) and console
sessions (list and revoke)."""

from __future__ import annotations

from datetime import timedelta

from starlette.responses import Response

from api import tokens
from api.console import sessions
from api.console.pages.overview import overview
from api.console.pages.user import home as user_home
from api.console.web import page_of, see_other
from api.errors import not_found
from api.handlers.settings import thresholds_in_force
from api.operation import Call
from api.services import services


def landing(call: Call) -> Response:
    """A user's own home; everyone else's landing is the machines overview."""
    principal = page_of(call).principal
    assert principal is not None
    if principal.role == "user":
        assert principal.billing_user is not None
        return user_home(Call(None, {"name": principal.billing_user}, {}, call.request_id, None, call.services,
                              call.console))
    return overview(call)


def users(call: Call) -> Response:
    page, svc = page_of(call), services(call)
    listed = svc.ledger.list_users()
    standing = svc.ledger.standings(None, thresholds_in_force(call))
    return page.render("admin/users.html", users=[(u, standing.get(u.name)) for u in listed])


def session_list(call: Call) -> Response:
    page, svc = page_of(call), services(call)
    with svc.read() as conn:
        live = sessions.list_live(conn, idle=timedelta(seconds=svc.config.console_idle_seconds))
        token_list = tokens.list_all(conn)
    return page.render("admin/sessions.html", sessions=live, tokens=token_list)


def revoke_session(call: Call) -> Response:
    svc = services(call)
    with svc.write() as conn:
        if not sessions.revoke(conn, call.params["session_id"]):
            raise not_found("session", str(call.params["session_id"]))
    return see_other("/sessions")
