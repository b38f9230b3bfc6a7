"""The SSH-proven user login's pages (docs/web-login.md, control.weblogin): start a flow, show its code and
command while the node has not vouched yet, and turn the proof into a console session, once.

The flow lives in one cookie of its own, scoped to ``/login/ssh``: the flow id, the code (shown again on each
poll: only its digest is in the database) and the browser secret the flow is bound to. HttpOnly and
SameSite=Strict, so no script and no other site's page can read it or make this browser poll or redeem with
it; it lasts as long as the flow. Another browser (no cookie, or another secret) polls as ``unknown``."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from starlette.responses import Response

from api.console import sessions
from api.console.web import SESSION_COOKIE, page_of, see_other, set_cookie
from api.operation import Call
from api.services import services
from control import weblogin
from control.weblogin import FlowState

FLOW_COOKIE = "gl_ssh_login"
FLOW_PATH = "/login/ssh"
COMMAND = "gpuledger-balance --web"  # hooks/gpuledger-balance, as the node role installs it
# ``id.CODE.secret``: token_urlsafe never makes a dot, the code is from weblogin.ALPHABET.
_VALUE = re.compile(r"([0-9]{1,18})\.([A-Z0-9]{8})\.([A-Za-z0-9_-]{43})")


@dataclass(frozen=True)
class FlowCookie:
    flow_id: int
    code: str
    secret: str

    @property
    def value(self) -> str:
        return f"{self.flow_id}.{self.code}.{self.secret}"

    @classmethod
    def parse(cls, raw: str | None) -> FlowCookie | None:
        found = _VALUE.fullmatch(raw or "")
        return cls(int(found.group(1)), found.group(2), found.group(3)) if found else None


def start(call: Call) -> Response:
    """POST /login/ssh: a new flow for this browser (a fresh secret each time), then the waiting page. Each
    start counts against the client's address, valid or not: the point is to bound how often one address makes
    the controller poll every node."""
    page, svc = page_of(call), services(call)
    client = page.request.client.host if page.request.client else "unknown"
    wait = svc.login_starts.retry_after(client)
    if wait is not None:
        return page.render("login_ssh.html", 429, state="throttled", retry_after=wait)
    svc.login_starts.failed(client)
    secret = secrets.token_urlsafe(32)
    try:
        with svc.write() as conn:
            flow = weblogin.start(conn, secret, now=datetime.now(UTC))
    except weblogin.TooManyFlows:
        return page.render("login_ssh.html", 503, state="busy")
    response = see_other(FLOW_PATH)
    response.set_cookie(FLOW_COOKIE, FlowCookie(flow.flow_id, flow.code, secret).value,
                        max_age=int(weblogin.LIFETIME.total_seconds()), path=FLOW_PATH, secure=page.secure,
                        httponly=True, samesite="strict")
    return response


def status(call: Call) -> Response:
    """GET /login/ssh: the flow's state. Proven: redeemed once into a new session (a fresh cookie value, so
    nothing a browser held before is promoted) and home. htmx's poll (``HX-Request``) only asks: 204 while
    pending, else it sends the browser here for a full page, so the session is made by a navigation."""
    page, svc = page_of(call), services(call)
    flow = FlowCookie.parse(page.request.cookies.get(FLOW_COOKIE))
    polling = page.request.headers.get("hx-request") == "true"
    state: FlowState | None = None
    session_cookie = None
    if flow is not None:
        now = datetime.now(UTC)
        with svc.write() as conn:
            state = weblogin.poll(conn, flow.flow_id, flow.secret, now=now)
            if state is FlowState.PROVEN and not polling:
                proof = weblogin.redeem(conn, flow.flow_id, flow.secret, now=now)
                if proof is None:  # redeemed or expired between the two statements
                    state = weblogin.poll(conn, flow.flow_id, flow.secret, now=now)
                else:
                    principal = sessions.WebPrincipal("user", proof.billing_user,
                                                      f"ssh:{proof.linux_user}@{proof.node}")
                    session_cookie = sessions.create_session(
                        conn, principal, lifetime=timedelta(seconds=svc.config.console_max_seconds))
    if polling:
        return Response(status_code=204) if state is FlowState.PENDING else Response(headers={"HX-Redirect":
                                                                                               FLOW_PATH})
    if session_cookie is not None:
        response = see_other("/")
        set_cookie(response, SESSION_COOKIE, session_cookie, secure=page.secure)
    elif flow is not None and state is FlowState.PENDING:
        code = weblogin.display(flow.code)
        return page.render("login_ssh.html", state="pending", code=code, command=f"{COMMAND} {code}")
    else:
        response = page.render("login_ssh.html", state=state.value if state else "unknown")
    response.delete_cookie(FLOW_COOKIE, path=FLOW_PATH, secure=page.secure, httponly=True, samesite="strict")
    return response
