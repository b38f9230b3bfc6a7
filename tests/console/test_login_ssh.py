"""The SSH-proven login's pages over HTTP: the flow cookie's flags, CSRF, the per-address limit on starts, and
the refusals (reused, expired, another browser's flow). The proof itself is control.weblogin.prove, as the
controller's poller calls it (the real SSH path is tests/console/test_browser_login.py)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from api.app import create_app
from api.config import ApiConfig
from api.console.pages.login_ssh import FLOW_COOKIE, FlowCookie
from control import weblogin
from ledger.service import Ledger
from tests.api.conftest import Tokens, serving
from tests.console.conftest import csrf_of


def started(c: httpx.Client) -> httpx.Response:
    form = c.get("/login")
    return c.post("/login/ssh", data={"csrf": csrf_of(form.text)})


def flow_of(c: httpx.Client) -> FlowCookie:
    found = FlowCookie.parse(c.cookies.get(FLOW_COOKIE))
    assert found is not None
    return found


def prove(ledger: Ledger, flow: FlowCookie, billing_user: str = "alice") -> None:
    now = datetime.now(UTC)
    with ledger.engine.begin() as conn:
        outcome = weblogin.prove(conn, flow.code, billing_user=billing_user, node="w1", linux_user="alice-linux",
                                 written_at=now, now=now)
    assert outcome is weblogin.ProveOutcome.PROVEN


def test_the_flow_cookie_is_httponly_strict_short_and_scoped(client: httpx.Client, issued: Tokens) -> None:
    done = started(client)
    assert (done.status_code, done.headers["location"]) == (303, "/login/ssh")
    cookie = done.headers["set-cookie"]
    parts = {p.strip().split("=")[0].lower(): p.strip() for p in cookie.split(";")}
    assert "httponly" in parts and parts["samesite"].lower() == "samesite=strict"
    assert parts["path"] == "Path=/login/ssh"
    assert parts["max-age"] == f"Max-Age={int(weblogin.LIFETIME.total_seconds())}"
    assert "secure" not in parts  # plain http here; tests/api/test_tls.py has the https side
    flow = flow_of(client)
    assert len(flow.secret) >= weblogin.MIN_BROWSER_SECRET
    waiting = client.get("/login/ssh")
    assert waiting.status_code == 200 and f"gpuledger-balance --web {weblogin.display(flow.code)}" in waiting.text
    assert client.get("/login/ssh", headers={"HX-Request": "true"}).status_code == 204
    again = started(client)  # a second start is a new flow with a new secret
    assert again.status_code == 303 and flow_of(client).secret != flow.secret


def test_a_start_without_the_csrf_field_is_refused(client: httpx.Client, issued: Tokens) -> None:
    client.get("/login")
    refused = client.post("/login/ssh", data={})
    assert refused.status_code == 403 and FLOW_COOKIE not in client.cookies


def test_proven_logs_in_once_with_a_new_session(client: httpx.Client, ledger: Ledger, issued: Tokens) -> None:
    client.cookies.set("gl_session", "planted-by-someone-else", domain="127.0.0.1")
    started(client)
    flow = flow_of(client)
    prove(ledger, flow)
    assert client.get("/login/ssh", headers={"HX-Request": "true"}).headers["hx-redirect"] == "/login/ssh"
    done = client.get("/login/ssh")
    assert (done.status_code, done.headers["location"]) == (303, "/")
    session = client.cookies.get("gl_session", domain="127.0.0.1")
    assert session and session != "planted-by-someone-else"
    assert FLOW_COOKIE not in client.cookies  # cleared
    home = client.get("/")
    assert home.status_code == 200 and "ssh:alice-linux@w1" in home.text
    # The back button, or a copy of the cookie kept: the flow is redeemed, no second session.
    with httpx.Client(base_url=str(client.base_url)) as replay:
        replay.cookies.set(FLOW_COOKIE, flow.value, path="/login/ssh")
        reused = replay.get("/login/ssh")
        assert reused.status_code == 200 and "already been used" in reused.text
        assert "gl_session" not in replay.cookies and 'action="/login/ssh"' in reused.text


def test_an_expired_flow_says_so_and_offers_a_new_one(client: httpx.Client, ledger: Ledger, issued: Tokens) -> None:
    secret = secrets.token_urlsafe(32)
    with ledger.engine.begin() as conn:
        flow = weblogin.start(conn, secret, now=datetime.now(UTC) - weblogin.LIFETIME - timedelta(seconds=1))
    client.cookies.set(FLOW_COOKIE, FlowCookie(flow.flow_id, flow.code, secret).value, path="/login/ssh")
    page = client.get("/login/ssh")
    assert page.status_code == 200 and "has expired" in page.text and 'action="/login/ssh"' in page.text
    assert client.get("/login/ssh", headers={"HX-Request": "true"}).headers["hx-redirect"] == "/login/ssh"


def test_another_browsers_flow_is_refused(client: httpx.Client, ledger: Ledger, issued: Tokens) -> None:
    started(client)
    flow = flow_of(client)
    prove(ledger, flow)
    with httpx.Client(base_url=str(client.base_url)) as other:
        assert "no login in progress" in other.get("/login/ssh").text  # no cookie at all
        forged = FlowCookie(flow.flow_id, flow.code, secrets.token_urlsafe(32))  # the id and code, not the secret
        other.cookies.set(FLOW_COOKIE, forged.value, path="/login/ssh")
        page = other.get("/login/ssh")
        assert "no login in progress" in page.text and "gl_session" not in other.cookies
        other.cookies.set(FLOW_COOKIE, "1.not-a-flow", path="/login/ssh")
        assert "no login in progress" in other.get("/login/ssh").text
    assert client.get("/login/ssh").status_code == 303  # the browser that started it still logs in


@pytest.fixture
def strict_url(ledger: Ledger) -> Iterator[str]:
    with serving(create_app(ledger, ApiConfig(console_login_starts=2))) as url:
        yield url


def test_starts_are_limited_per_address(strict_url: str, issued: Tokens) -> None:
    with httpx.Client(base_url=strict_url) as c:
        assert [started(c).status_code for _ in range(3)] == [303, 303, 429]
        refused = started(c)
        assert refused.status_code == 429 and "Too many logins started from your address" in refused.text
