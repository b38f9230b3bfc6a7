"""Console login, sessions and CSRF over HTTP (the browser tests drive the same pages in Chromium)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import text

from api.app import create_app
from api.config import ApiConfig
from api.console import sessions
from ledger.service import Ledger
from tests.api.conftest import Tokens, bearer, serving
from tests.console.conftest import csrf_of, log_in


@pytest.fixture
def strict_url(ledger: Ledger) -> Iterator[str]:
    """The app with a low failure limit and a short idle time, as production could configure it."""
    config = ApiConfig(auth_failures=3, auth_window_seconds=3600, console_idle_seconds=120)
    with serving(create_app(ledger, config)) as url:
        yield url


def test_login_makes_a_server_side_session_with_a_strict_cookie(base_url: str, issued: Tokens,
                                                                 ledger: Ledger) -> None:
    with httpx.Client(base_url=base_url) as c:
        form = c.get("/login")
        assert "gl_pre=" in form.headers["set-cookie"]
        r = c.post("/login", data={"csrf": csrf_of(form.text), "token": issued.admin, "next": "/users"})
        assert (r.status_code, r.headers["location"]) == (303, "/users")
        cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("gl_session="))
        flags = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite=strict", "path=/"} <= flags and "secure" not in flags
        value = cookie.split(";")[0].split("=", 1)[1]
        with ledger.engine.connect() as conn:
            stored = conn.execute(text("SELECT sha256, actor, role FROM api.console_session")).all()
        # Only the hash is kept; the cookie value itself is nowhere in the table.
        assert [(bytes(h), a, role) for h, a, role in stored] == [(sessions.digest(value), "api:admin-x", "admin")]
        assert c.get("/users").status_code == 200


def test_secure_cookie_when_configured(ledger: Ledger, issued: Tokens) -> None:
    with serving(create_app(ledger, ApiConfig(console_secure_cookies=True))) as url, httpx.Client(base_url=url) as c:
        form = c.get("/login")
        pre = form.headers["set-cookie"].split(";")[0]   # a Secure cookie: httpx keeps none over http
        r = c.post("/login", data={"csrf": csrf_of(form.text), "token": issued.admin}, headers={"Cookie": pre})
        assert r.status_code == 303 and "secure" in form.headers["set-cookie"].lower()
        assert all("secure" in h.lower() for h in r.headers.get_list("set-cookie"))


def test_login_refuses_a_missing_or_wrong_csrf_token(base_url: str, issued: Tokens) -> None:
    with httpx.Client(base_url=base_url) as c:
        form = c.get("/login")
        for data in ({"token": issued.admin}, {"token": issued.admin, "csrf": "x" * 43}):
            r = c.post("/login", data=data)
            assert r.status_code == 403 and "gl_session" not in c.cookies
        assert c.post("/login", data={"token": issued.admin, "csrf": csrf_of(form.text)}).status_code == 303


@pytest.mark.parametrize("path", ["/logout", "/preferences", "/sessions/1/revoke"])
def test_every_logged_in_form_refuses_a_missing_or_wrong_csrf_token(base_url: str, issued: Tokens, path: str) -> None:
    with log_in(base_url, issued.admin) as c:
        pre = c.cookies["gl_pre"]
        for data in ({}, {"csrf": "wrong"}, {"csrf": pre}):   # the pre-session value is not the session's
            r = c.post(path, data=data)
            assert r.status_code == 403, (path, data)
        assert c.get("/users").status_code == 200   # still logged in


def test_login_failures_are_rate_limited_but_a_valid_token_still_gets_in(strict_url: str, issued: Tokens) -> None:
    with httpx.Client(base_url=strict_url) as c:
        csrf = csrf_of(c.get("/login").text)
        statuses = [c.post("/login", data={"csrf": csrf, "token": t}).status_code
                    for t in ("nonsense", "glt_000000000000_" + "A" * 43, issued.revoked, issued.expired, "x")]
        assert statuses == [401, 401, 401, 429, 429]
        assert "Retry" not in c.get("/login").text
        assert c.post("/login", data={"csrf": csrf, "token": issued.auditor}).status_code == 303


def test_idle_time_ends_a_session(strict_url: str, issued: Tokens, ledger: Ledger) -> None:
    with log_in(strict_url, issued.admin) as idle, log_in(strict_url, issued.auditor) as busy:
        with ledger.engine.begin() as conn:
            conn.execute(text("UPDATE api.console_session SET last_seen = now() - interval '121 seconds'"
                              " WHERE actor = 'api:admin-x'"))
        r = idle.get("/users")
        assert (r.status_code, r.headers["location"]) == (302, "/login?next=/users")
        assert busy.get("/users").status_code == 200


def test_a_session_never_outlives_its_absolute_expiry(ledger: Ledger) -> None:
    """Also a principal without a token (the SSH-proven login's kind): role user, an ssh: actor."""
    ledger.add_user("carol", actor="test")
    with ledger.engine.begin() as conn:
        principal = sessions.WebPrincipal("user", "carol", "ssh:carol@node7")
        cookie = sessions.create_session(conn, principal, lifetime=timedelta(seconds=1))
        found = sessions.lookup(conn, cookie, idle=timedelta(hours=1))
        assert found is not None and found.principal == principal
        # now() is the transaction's start: the next transaction begins after the lifetime has passed.
        conn.execute(text("SELECT pg_sleep(1.1)"))
    with ledger.engine.begin() as conn:
        assert sessions.lookup(conn, cookie, idle=timedelta(hours=1)) is None


def test_revoking_the_token_ends_its_sessions(base_url: str, issued: Tokens) -> None:
    admin = httpx.Client(base_url=base_url, headers=bearer(issued.admin))
    with admin, log_in(base_url, issued.operator) as operator:
        assert operator.get("/users").status_code == 200
        token_id = next(t["id"] for t in admin.get("/v1/tokens").json() if t["role"] == "operator")
        assert admin.delete(f"/v1/tokens/{token_id}").status_code == 200
        r = operator.get("/users")
        assert (r.status_code, r.headers["location"]) == (302, "/login?next=/users")


def test_logout_revokes_the_session(base_url: str, issued: Tokens) -> None:
    with log_in(base_url, issued.auditor) as c:
        cookie = c.cookies["gl_session"]
        r = c.post("/logout", data={"csrf": csrf_of(c.get("/users").text)})
        assert (r.status_code, r.headers["location"]) == (303, "/login")
        # Even a copy of the cookie kept elsewhere is dead now.
        r = httpx.get(base_url + "/users", headers={"Cookie": f"gl_session={cookie}"})
        assert r.status_code == 302


def test_an_admin_lists_and_revokes_sessions(base_url: str, issued: Tokens) -> None:
    with log_in(base_url, issued.admin) as admin, log_in(base_url, issued.alice) as alice:
        page = admin.get("/sessions")
        assert len(re.findall(r'action="/sessions/[0-9]+/revoke"', page.text)) == 2
        found = re.search(r'<td>api:user-alice</td>.*?action="/sessions/([0-9]+)/revoke"', page.text, re.S)
        assert found is not None
        r = admin.post(f"/sessions/{found.group(1)}/revoke", data={"csrf": csrf_of(page.text)})
        assert (r.status_code, r.headers["location"]) == (303, "/sessions")
        assert alice.get("/").status_code == 302
        assert len(re.findall(r'action="/sessions/[0-9]+/revoke"', admin.get("/sessions").text)) == 1
        assert admin.post("/sessions/999999/revoke", data={"csrf": csrf_of(page.text)}).status_code == 404


def test_next_stays_on_this_site(base_url: str, issued: Tokens) -> None:
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "/users"):
        with httpx.Client(base_url=base_url) as c:
            r = c.post("/login", data={"csrf": csrf_of(c.get("/login").text), "token": issued.admin, "next": target})
            assert r.headers["location"] == ("/users" if target == "/users" else "/"), target


def test_a_user_cannot_reach_another_users_pages(base_url: str, issued: Tokens) -> None:
    with log_in(base_url, issued.alice) as alice:
        for path in ("/users/alice", "/users/alice/usage", "/users/alice/usage?format=csv", "/users/alice/statement",
                     "/users/alice/projects", "/"):
            assert alice.get(path).status_code == 200, path
        for path in ("/users/bob", "/users/bob/usage", "/users/bob/usage?format=csv", "/users/bob/statement",
                     "/users/bob/statement?format=csv", "/users/bob/projects", "/users", "/sessions"):
            r = alice.get(path)
            assert r.status_code == 403 and "bob" not in r.text.split("<main", 1)[1].split("</main>")[0], path
