"""Tokens at rest, revocation, the failed-authentication limit, and error bodies for bad input."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
from sqlalchemy import text

from api.app import create_app
from api.config import ApiConfig
from api.ratelimit import FailedAuthLimiter
from ledger.embedded import EmbeddedPostgres
from ledger.service import Ledger
from tests.api.conftest import ApiDatabase, Tokens, bearer, serving

PG_DUMP = Path("/usr/lib/postgresql/15/bin/pg_dump")


def test_database_dump_holds_no_issued_token(client: httpx.Client, issued: Tokens, api_db: ApiDatabase,
                                             pg_cluster: EmbeddedPostgres) -> None:
    created = client.post("/v1/tokens", headers=bearer(issued.admin), json={"name": "ci", "role": "auditor"})
    assert created.status_code == 201
    new = created.json()["token"]
    assert client.get("/v1/me", headers=bearer(new)).json()["role"] == "auditor"
    dump = subprocess.run([str(PG_DUMP), "--data-only", pg_cluster.url(database=api_db.name).replace(
        "postgresql+psycopg", "postgresql")], capture_output=True, text=True, check=True).stdout
    assert "api.token" in dump
    for token in (new, *vars(issued).values()):
        secret = token[len("glt_000000000000_"):]
        assert token not in dump and secret not in dump


def test_revoked_token_stops_working_and_is_audited(client: httpx.Client, issued: Tokens, ledger: Ledger) -> None:
    created = client.post("/v1/tokens", headers=bearer(issued.admin), json={"name": "tmp", "role": "user",
                                                                            "user": "alice"}).json()
    assert client.get("/v1/wallets/alice/balance", headers=bearer(created["token"])).status_code == 200
    revoked = client.delete(f"/v1/tokens/{created['id']}", headers=bearer(issued.admin))
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert client.get("/v1/wallets/alice/balance", headers=bearer(created["token"])).status_code == 401
    with ledger.engine.connect() as conn:
        actions = conn.execute(text("SELECT action, request_id FROM api.audit ORDER BY id")).all()
    assert [a for a, _ in actions] == ["token.create", "token.revoke"]
    assert actions[1][1] == revoked.headers["X-Request-Id"]
    assert client.post("/v1/tokens", headers=bearer(issued.admin),
                       json={"name": "x", "role": "user", "user": "ghost"}).status_code == 404


def test_failed_authentication_is_rate_limited(ledger: Ledger, issued: Tokens) -> None:
    with serving(create_app(ledger, ApiConfig(auth_failures=3, auth_window_seconds=60))) as url, \
            httpx.Client(base_url=url) as c:
        bad = bearer("glt_000000000000_" + "B" * 43)
        assert [c.get("/v1/me", headers=bad).status_code for _ in range(3)] == [401, 401, 401]
        limited = c.get("/v1/me", headers=bad)
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        assert limited.json()["error"]["code"] == "too_many_failures"
        # A valid token is checked first and still works from the address; no token at all is a failure too.
        assert c.get("/v1/me", headers=bearer(issued.admin)).status_code == 200
        assert c.get("/v1/me").status_code == 429


def test_limiter_window_moves() -> None:
    now = [0.0]
    limiter = FailedAuthLimiter(2, 10, clock=lambda: now[0])
    limiter.failed("a")
    now[0] = 5
    limiter.failed("a")
    assert limiter.retry_after("a") == 5 and limiter.retry_after("b") is None
    now[0] = 10.5
    assert limiter.retry_after("a") is None


def test_bad_input_gets_clear_errors(client: httpx.Client, issued: Tokens) -> None:
    admin = bearer(issued.admin)
    cases = [
        (client.post("/v1/users", headers=admin, json={"name": "carol", "colour": "red"}), 422, "unknown_field"),
        (client.post("/v1/users", headers=admin, content=b"{nope"), 400, "malformed_json"),
        (client.post("/v1/users", headers=admin, content=b"[1]"), 400, "malformed_json"),
        (client.post("/v1/users", headers=admin, json={"name": "a\u0000b"}), 422, "invalid_characters"),
        (client.post("/v1/users", headers=admin, json={"name": "Bad Name"}), 422, "validation_error"),
        (client.post("/v1/users", headers=admin, json={"name": "alice"}), 409, "duplicate_name"),
        (client.get("/v1/usage", headers=admin, params={"limit": "501"}), 422, "invalid_parameter"),
        (client.get("/v1/usage", headers=admin, params={"colour": "x"}), 400, "unknown_parameter"),
        (client.get("/v1/usage", headers=admin, params={"from": "2026-01-01"}), 422, "invalid_range"),
        (client.get("/v1/reports/revenue", headers=admin, params={"from": "2020-01-01", "to": "2026-01-01"}), 422,
         "range_too_long"),
        (client.get("/v1/reports/revenue", headers=admin, params={"from": "2026-02-30", "to": "2026-03-01"}), 422,
         "invalid_parameter"),
        (client.get("/v1/entries/99999999999999999999", headers=admin), 422, "invalid_parameter"),
        (client.get("/v1/entries/42", headers=admin), 404, "unknown_entry"),
        (client.get("/v1/nope", headers=admin), 404, "not_found"),
        (client.put("/v1/users", headers=admin), 405, "method_not_allowed"),
        (client.get("/v1/me"), 401, "unauthenticated"),
    ]
    for response, status, code in cases:
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), response.text



def test_limiter_memory_is_bounded() -> None:
    """Issue #12 item 5: the table forgot no address; now at most max_clients, expired ones dropped."""
    now = [0.0]
    limiter = FailedAuthLimiter(3, 10, max_clients=100, clock=lambda: now[0])
    for i in range(1000):
        limiter.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter) == 100
    assert limiter.retry_after("10.0.0.0") is None   # evicted: it failed longest ago
    for _ in range(50):
        limiter.failed("10.9.9.9")   # a persistent guesser keeps only its last `limit` failures, stays refused
        now[0] += 0.1
    assert limiter.retry_after("10.9.9.9") is not None
    now[0] += 10
    limiter.failed("10.8.8.8")
    assert len(limiter) == 1   # everything else left the window
