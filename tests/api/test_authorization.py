"""The authorization matrix: every operation of the route table against anonymous, expired and revoked
tokens, every role, and a user on their own and on another user's objects. Zero mismatches. The console's
pages and forms are rows of the same table: their callers hold a console session (made from the same tokens)
instead of a bearer token, and a stranger is sent to /login instead of getting 401."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import text

from api import tokens
from api.app import all_operations
from api.console import sessions
from api.operation import Operation
from ledger.service import Ledger
from tests.api.conftest import Tokens, bearer

# Path values for the caller's own objects (alice) and someone else's (bob).
OWN = {"name": "alice", "wallet": "user:alice", "user": "alice"}
OTHER = {"name": "bob", "wallet": "bob", "user": "bob"}
# alice is charged to project lab (bob too): its wallet is hers to read where the rule says so (Own.charged).
CHARGED = {"name": "alice", "wallet": "project:lab", "user": "alice"}
FIXED = {"entry_id": "1", "token_id": "999", "format": "csv", "test_id": "1", "session_id": "999999",
         "request_id": "1"}
PRE = "matrix-pre-session-csrf-value-0123456789"
QUERY = {"from": "2026-01-01", "to": "2026-02-01"}


@dataclass(frozen=True)
class Browser:
    """A console caller: its session cookie (None: none) and that session's CSRF secret."""

    cookie: str | None
    csrf: str


def _request(client: httpx.Client, op: Operation, token: str | None, values: dict[str, str],
             browser: Browser | None = None) -> httpx.Response:
    path = op.path
    for p in op.path_params:
        path = path.replace("{" + p.name + "}", values.get(p.name, FIXED.get(p.name, "n1")))
    query = {p.name: QUERY[p.name] for p in op.query if p.name in QUERY}
    if op.own and op.own.param in {p.name for p in op.query}:
        query[op.own.param] = values["user"]
    if op.page:
        assert browser is not None
        cookies = {"gl_pre": PRE, **({"gl_session": browser.cookie} if browser.cookie else {})}
        form = {"csrf": browser.csrf} if op.method == "POST" else None
        return client.request(op.method, path, params=query, data=form,
                              headers={"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())})
    headers = {"Idempotency-Key": f"matrix-{op.operation_id}"} if op.money else {}
    if token is not None:
        headers |= bearer(token)
    return client.request(op.method, path, params=query, headers=headers, json={} if op.body is not None else None)


def _expected(op: Operation, who: str) -> str:
    """'pass' (neither 401 nor 403), 'unauthenticated' or 'forbidden'."""
    if op.public:
        return "pass"
    if who in ("anonymous", "expired", "revoked", "garbage"):
        return "unauthenticated"
    if who.startswith("alice") and "user" in op.roles:
        return "pass"
    if who == "alice-own":
        return "pass" if op.own else "forbidden"
    if who == "alice-charged":
        return "pass" if op.own and (op.own.param != "wallet" or op.own.charged) else "forbidden"
    if who == "alice-other":
        return "forbidden"
    return "pass" if who in op.roles else "forbidden"


def _outcome(op: Operation, response: httpx.Response) -> str:
    if op.page:
        if response.status_code == 302 and response.headers["location"].startswith("/login?next="):
            return "unauthenticated"
        return "forbidden" if response.status_code == 403 else "pass"
    return {401: "unauthenticated", 403: "forbidden"}.get(response.status_code, "pass")


def _browsers(ledger: Ledger, issued: Tokens, callers: dict[str, tuple[str | None, dict[str, str]]]
              ) -> dict[str, Browser]:
    """A console session per caller, made from its token as the login form makes it (an expired or revoked
    token's too, which the lookup must then refuse); a garbage cookie for the garbage token. A browser whose
    session is dead is shown forms with the pre-session value, so that is what it sends."""
    out = {"anonymous": Browser(None, PRE), "garbage": Browser("not-a-session-cookie", PRE)}
    with ledger.engine.begin() as conn:
        for who, (token, _) in callers.items():
            if who in out or token is None:
                continue
            row = conn.execute(text("SELECT id, name, role, billing_user FROM api.token WHERE prefix = :p"),
                               {"p": tokens.prefix_of(token)}).one()
            principal = sessions.WebPrincipal.of_token(tokens.Principal(row[0], row[1], row[2], row[3]))
            cookie = sessions.create_session(conn, principal, lifetime=timedelta(hours=1))
            csrf = conn.execute(text("SELECT csrf FROM api.console_session WHERE sha256 = :h"),
                                {"h": sessions.digest(cookie)}).scalar_one()
            out[who] = Browser(cookie, PRE if who in ("expired", "revoked") else csrf)
    return out


@pytest.mark.slow
def test_authorization_matrix(client: httpx.Client, issued: Tokens, ledger: Ledger) -> None:
    ledger.add_project("lab", actor="test")
    for member in ("alice", "bob"):
        ledger.assign_project(member, "lab", actor="test")
    callers: dict[str, tuple[str | None, dict[str, str]]] = {
        "anonymous": (None, OTHER), "expired": (issued.expired, OTHER), "revoked": (issued.revoked, OTHER),
        "garbage": ("glt_000000000000_" + "A" * 43, OTHER),
        "admin": (issued.admin, OTHER), "operator": (issued.operator, OTHER), "auditor": (issued.auditor, OTHER),
        "alice-own": (issued.alice, OWN), "alice-other": (issued.alice, OTHER),
        "alice-charged": (issued.alice, CHARGED),
    }
    browsers = _browsers(ledger, issued, callers)
    checked, mismatches = 0, []
    # Reads before writes, so a mutation (e.g. revoking) cannot change a later row's answer; logging out last.
    for op in sorted(all_operations(), key=lambda o: (o.method != "GET", o.operation_id == "form_logout")):
        for who, (token, values) in callers.items():
            response = _request(client, op, token, values, browsers[who])
            assert response.status_code < 500, (op.operation_id, who, response.text)
            checked += 1
            if _outcome(op, response) != _expected(op, who):
                mismatches.append((op.method, op.path, who, response.status_code, response.text[:200]))
    assert checked == len(all_operations()) * len(callers)
    assert mismatches == []


def test_pages_are_in_the_table_and_not_in_the_openapi_document(client: httpx.Client) -> None:
    pages = {(op.method, op.path) for op in all_operations() if op.page}
    assert {("GET", "/login"), ("POST", "/login"), ("GET", "/users/{name}/usage"), ("POST", "/logout")} <= pages
    document = client.get("/openapi.json").json()["paths"]
    assert not [key for key in pages if key[1] in document and key[0].lower() in document[key[1]]]
    assert "/v1/usage" in document


def test_every_operation_is_in_the_matrix_roles() -> None:
    """Each operation names who may call it; only public ones name nobody."""
    for op in all_operations():
        assert op.public or op.allowed_roles(), op.operation_id
        assert op.roles <= {"admin", "operator", "auditor", "user"}, op.operation_id
        assert op.public or "admin" in op.roles, op.operation_id


def test_user_sees_only_own_usage(client: httpx.Client, issued: Tokens) -> None:
    r = client.get("/v1/usage", headers=bearer(issued.alice))
    assert r.status_code == 200
    assert client.get("/v1/usage", params={"user": "bob"}, headers=bearer(issued.alice)).status_code == 403
    assert client.get("/v1/entries", headers=bearer(issued.alice)).status_code == 403
    assert client.get("/v1/wallets/project:x/balance", headers=bearer(issued.alice)).status_code == 403


def test_a_member_sees_the_tier_enforced_on_them(client: httpx.Client, issued: Tokens, ledger: Ledger) -> None:
    """alice and bob are charged to project lab, which holds 50 (tier warning by 100 / 10 / 0); alice's
    own wallet holds 500, which pays for nothing while she is in the project."""
    ledger.add_project("lab", actor="test")
    ledger.add_project("other", actor="test")
    for member in ("alice", "bob"):
        ledger.assign_project(member, "lab", actor="test")
    admin, alice = bearer(issued.admin), bearer(issued.alice)
    for wallet, amount in (("project:lab", "50"), ("alice", "500")):
        assert client.post(f"/v1/wallets/{wallet}/recharge", headers=admin | {"Idempotency-Key": f"m-{wallet}"},
                           json={"amount": amount}).status_code == 201
    enforced = ledger.standings(["alice"])["alice"]
    for ref in ("alice", "user:alice"):
        seen = client.get(f"/v1/wallets/{ref}/balance", headers=alice).json()
        assert (seen["wallet"], seen["available"], seen["tier"], seen["own_available"]) == (
            enforced.wallet, "50.000000", enforced.tier.value, "500.000000")
    assert client.get("/v1/wallets/alice/balance", headers=admin).json()["tier"] == "warning"
    lab = client.get("/v1/wallets/project:lab/balance", headers=alice)
    assert (lab.status_code, lab.json()["available"], lab.json()["tier"]) == (200, "50.000000", "warning")
    # Not the project's other wallets' or members' data: another project, bob's balance, usage, statement.
    assert client.get("/v1/wallets/project:other/balance", headers=alice).status_code == 403
    assert client.get("/v1/wallets/bob/balance", headers=alice).status_code == 403
    assert client.get("/v1/usage", params={"user": "bob"}, headers=alice).status_code == 403
    assert client.get("/v1/wallets/project:lab/statement", headers=alice,
                      params={"from": "2026-01-01", "to": "2026-02-01"}).status_code == 403
    assert client.get("/v1/wallets/bob/balance", headers=admin).json()["own_available"] == "0.000000"
    ledger.assign_project("alice", None, actor="test")
    back = client.get("/v1/wallets/alice/balance", headers=alice).json()
    assert (back["wallet"], back["available"], back["own_available"]) == ("liabilities:wallet:user:alice",
                                                                          "500.000000", None)
    assert client.get("/v1/wallets/project:lab/balance", headers=alice).status_code == 403
