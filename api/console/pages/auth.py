"""Login with a pasted API token, logout, and the language and theme switches.

The SSH-proven user login (control.weblogin) is wired into the login page later: it will call
``sessions.create_session`` with a token-less principal (role user, actor ``ssh:NAME@NODE``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from starlette.responses import Response

from api import tokens
from api.console import i18n, sessions
from api.console.web import (
    SESSION_COOKIE,
    THEME_COOKIE,
    THEMES,
    YEAR_S,
    page_of,
    safe_next,
    see_other,
    set_cookie,
)
from api.operation import Call
from api.services import services


def login_form(call: Call) -> Response:
    page = page_of(call)
    if page.principal is not None:
        return see_other(call.params.get("next") or "/")
    return page.render("login.html", next=safe_next(call.params.get("next")), failed=False, retry_after=None)


def login(call: Call) -> Response:
    """A valid token is accepted even from an address over the failure limit (as the API does: a guesser
    sharing the admin's address must not lock the admin out); anything else counts as a failure."""
    page, svc = page_of(call), services(call)
    token = call.body.get("token", "").strip()
    target = safe_next(call.body.get("next"))
    grant = None
    if tokens.prefix_of(token) is not None:
        with svc.read() as conn:
            grant = tokens.authenticate(conn, token)
    if grant is None:
        client = page.request.client.host if page.request.client else "unknown"
        wait = svc.limiter.retry_after(client)
        if wait is None:
            svc.limiter.failed(client)
            svc.metrics.auth_failures.inc()
        return page.render("login.html", 429 if wait else 401, next=target, failed=True, retry_after=wait)
    lifetime = timedelta(seconds=svc.config.console_max_seconds)
    if grant.expires_at is not None:
        # Never outlive the token: the lookup would end it then anyway, but the row says so from the start.
        lifetime = min(lifetime, grant.expires_at - datetime.now(UTC))
    with svc.write() as conn:
        cookie = sessions.create_session(conn, sessions.WebPrincipal.of_token(grant.principal), lifetime=lifetime)
    response = see_other(target)
    set_cookie(response, SESSION_COOKIE, cookie, secure=page.secure)
    return response


def logout(call: Call) -> Response:
    page, svc = page_of(call), services(call)
    assert page.session is not None
    with svc.write() as conn:
        sessions.revoke(conn, page.session.id)
    response = see_other("/login")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def preferences(call: Call) -> Response:
    page = page_of(call)
    response = see_other(call.body.get("next") or "/")
    lang, theme = call.body.get("lang"), call.body.get("theme")
    if lang in i18n.LANGUAGES:
        set_cookie(response, i18n.COOKIE, lang, secure=page.secure, max_age=YEAR_S)
    if theme in THEMES:
        set_cookie(response, THEME_COOKIE, theme, secure=page.secure, max_age=YEAR_S)
    return response
