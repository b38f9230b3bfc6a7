"""Console fixtures: the API's (a fresh database per test, the app on loopback, one token per role) and a
logged-in HTTP client per role, made by the console's own login form."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from tests.api.conftest import api_db, api_template, base_url, client, issued, ledger  # noqa: F401 (fixtures)

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, html[:500]
    return found.group(1)


@contextmanager
def log_in(base: str, token: str) -> Iterator[httpx.Client]:
    """A client logged in through GET and POST /login, as a browser would be."""
    with httpx.Client(base_url=base, timeout=30) as c:
        yield _logged_in(c, token)


def _logged_in(c: httpx.Client, token: str) -> httpx.Client:
    form = c.get("/login")
    assert form.status_code == 200, form.text[:300]
    done = c.post("/login", data={"csrf": csrf_of(form.text), "token": token, "next": "/"})
    assert done.status_code == 303, done.text[:300]
    assert "gl_session" in c.cookies
    return c
