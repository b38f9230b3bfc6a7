"""Issue #12 items 3-7 against the real server: memory per 401/403, aborted export downloads, the limiter
behind (no) proxy, the body limit, and PostgreSQL going away and coming back."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from api import tokens
from api.app import create_app
from api.config import ApiConfig
from bench.api import seed
from gpuledger.main import upgrade_all
from ledger.bootstrap import APP_ROLE, bootstrap
from ledger.config import LedgerConfig
from ledger.db import create_app_engine
from ledger.embedded import EmbeddedPostgres
from ledger.environ import Secret
from ledger.errors import ConfigError
from ledger.service import Ledger
from tests.api.conftest import ApiDatabase, Tokens, bearer, serving
from tests.api.live import api_process, get, hammer

BAD = "glt_000000000000_" + "B" * 43


def test_401_and_403_do_not_grow_the_server(api_db: ApiDatabase, issued: Tokens, tmp_path: Path) -> None:
    """Item 3: one shared exception object per status kept every raise's frames (~6 KB a request)."""
    with api_process(api_db.app_url, tmp_path / "api.log", AUTH_FAILURES="1000000") as live:
        for request, status in ((get("/v1/me"), 401), (get("/v1/users", issued.alice), 403)):
            assert hammer(live.port, request, 2_000) == {status: 2_000}   # warm: allocator arenas, caches
            before = live.rss_kib()
            assert hammer(live.port, request, 20_000) == {status: 20_000}
            grown = live.rss_kib() - before
            print(f"{status}: RSS {before} KiB -> +{grown} KiB over 20,000 requests")
            assert grown < 20 * 1024, f"{status}: grew {grown} KiB"


def test_missing_credentials_are_rate_limited(ledger: Ledger, issued: Tokens) -> None:
    """Item 3: requests without an Authorization header were never counted."""
    with serving(create_app(ledger, ApiConfig(auth_failures=5))) as url, httpx.Client(base_url=url) as c:
        assert [c.get("/v1/me").status_code for _ in range(6)] == [401] * 5 + [429]
        assert c.get("/v1/me", headers={"Authorization": "Basic eDp5"}).status_code == 429
        assert c.get("/v1/me", headers=bearer(issued.admin)).status_code == 200


def test_forwarded_for_is_ignored_unless_its_proxy_is_trusted(api_db: ApiDatabase, issued: Tokens,
                                                             tmp_path: Path) -> None:
    """Item 5: uvicorn trusted X-Forwarded-For from 127.0.0.1, so each forged address had its own budget."""
    def attempts(url: str) -> list[int]:
        with httpx.Client(base_url=url) as c:
            return [c.get("/v1/me", headers={**bearer(BAD), "X-Forwarded-For": f"203.0.113.{i}"}).status_code
                    for i in range(30)]

    with api_process(api_db.app_url, tmp_path / "plain.log") as live:
        assert attempts(live.url) == [401] * 10 + [429] * 20
        # Over the limit, the admin's valid token still works from the same address.
        assert httpx.get(live.url + "/v1/me", headers=bearer(issued.admin)).status_code == 200
    with api_process(api_db.app_url, tmp_path / "proxied.log", TRUSTED_PROXIES="127.0.0.1") as live:
        # Behind a named proxy each forwarded client is its own address...
        assert attempts(live.url) == [401] * 30
        with httpx.Client(base_url=live.url) as c:
            # ...and one forwarded client is limited whatever the proxy's own address did.
            same = [c.get("/v1/me", headers={**bearer(BAD), "X-Forwarded-For": "198.51.100.7"}).status_code
                    for _ in range(11)]
        assert same == [401] * 10 + [429]


def test_proxy_and_limit_settings_fail_fast_naming_their_key() -> None:
    config = ApiConfig.from_env({"GPULEDGER_API_TRUSTED_PROXIES": " 10.0.0.5, 10.1.0.0/16 ",
                                 "GPULEDGER_API_MAX_BODY_BYTES": "2048",
                                 "GPULEDGER_API_IDLE_IN_TRANSACTION_SECONDS": "30"})
    assert config.trusted_proxies == ("10.0.0.5", "10.1.0.0/16")
    assert config.uvicorn_options()["forwarded_allow_ips"] == "10.0.0.5,10.1.0.0/16"
    assert config.max_body_bytes == 2048
    assert config.session_settings() == {"idle_in_transaction_session_timeout": "30s"}
    assert ApiConfig().uvicorn_options()["proxy_headers"] is False
    for key, value in (("TRUSTED_PROXIES", "*"), ("TRUSTED_PROXIES", "proxy.example"), ("MAX_BODY_BYTES", "10")):
        with pytest.raises(ConfigError, match=f"GPULEDGER_API_{key}"):
            ApiConfig.from_env({f"GPULEDGER_API_{key}": value})


def test_a_body_over_the_limit_is_refused_unread(client: httpx.Client, issued: Tokens) -> None:
    """Item 6: a 200 MB body was parsed and validated whole (1.7 GB RSS) and echoed back in the 422."""
    admin = bearer(issued.admin)
    period = {"from": "2026-03-01", "to": "2026-03-02"}
    huge = b'{"resource": "gpu", "amount": "1", "per": "1", "model_pattern": "' + b"x" * (8 << 20) + b'"}'
    started = time.monotonic()
    refused = client.post("/v1/prices/preview", params=period, headers=admin, content=huge)
    assert (refused.status_code, refused.json()["error"]["code"]) == (413, "body_too_large")
    assert time.monotonic() - started < 10   # generous: it is refused on its Content-Length, before reading

    def chunked() -> Iterator[bytes]:   # no Content-Length: counted as it arrives
        yield huge[:1000]
        for i in range(1000, len(huge), 1 << 16):
            yield huge[i:i + (1 << 16)]

    refused = client.post("/v1/prices/preview", params=period, headers=admin, content=chunked())
    assert (refused.status_code, refused.json()["error"]["code"]) == (413, "body_too_large")
    # Under the limit, a validation error quotes only the start of the offending value.
    echo = client.post("/v1/prices/preview", params=period, headers=admin,
                       json={"resource": "g" * 500_000, "amount": "1", "per": "1"})
    assert echo.status_code == 422 and len(echo.content) < 2_000, len(echo.content)
    ok = client.post("/v1/prices/preview", params=period, headers=admin,
                     json={"resource": "gpu", "amount": "1", "per": "1"})
    assert ok.status_code == 200, ok.text


def _idle_in_transaction(superuser_url: str) -> list[float]:
    """Ages in seconds of the app role's sessions idle inside a transaction."""
    engine = create_engine(superuser_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return [float(a) for a in conn.execute(text(
                "SELECT extract(epoch FROM now() - state_change) FROM pg_stat_activity"
                " WHERE usename = :role AND state LIKE 'idle in transaction%'"), {"role": APP_ROLE}).scalars()]
    finally:
        engine.dispose()


def _abort_download(port: int, request: bytes) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)   # the server fills little before it blocks
    sock.connect(("127.0.0.1", port))
    sock.sendall(request)
    received = b""
    while len(received) < 1024 and (part := sock.recv(1024)):
        received += part
    assert received.startswith(b"HTTP/1.1 200"), received[:200]
    return sock


def test_aborted_and_stalled_downloads_give_back_their_connections(
        api_db: ApiDatabase, ledger: Ledger, issued: Tokens, tmp_path: Path, pg_cluster: EmbeddedPostgres) -> None:
    """Item 4: each aborted export left its producer blocked, idle in transaction, outside the thread limit;
    12 of them exhausted the pool and every request (health included) took 30 s and failed. A client that
    stays connected but stops reading must not hold a snapshot and a thread forever either."""
    seed(ledger, 5, 30_000)   # ~6 MB of CSV: more than the channel and the socket buffers hold
    superuser = pg_cluster.url(database=api_db.name)
    export = get("/v1/exports/csv?from=2026-02-28&to=2026-04-01", issued.auditor)
    with api_process(api_db.app_url, tmp_path / "api.log") as live:
        for _ in range(12):   # each read 1 KB, then gone
            _abort_download(live.port, export).close()
        time.sleep(1)
        started = time.monotonic()
        health = httpx.get(live.url + "/healthz", timeout=60)
        took = time.monotonic() - started
        deadline = time.monotonic() + 10
        while (ages := _idle_in_transaction(superuser)) and time.monotonic() < deadline:
            time.sleep(0.5)
        print(f"healthz {health.status_code} in {took:.2f} s; idle in transaction: {ages}")
        assert health.status_code == 200 and took < 2
        assert not [a for a in ages if a > 10]
        whole = httpx.get(live.url + "/v1/exports/csv", params={"from": "2026-02-28", "to": "2026-04-01"},
                          headers=bearer(issued.auditor), timeout=60)
        assert whole.status_code == 200 and whole.text.count("\n") > 30_000   # a complete download is whole
    with api_process(api_db.app_url, tmp_path / "stall.log", IDLE_IN_TRANSACTION_SECONDS="2", DB_THREADS="1") as live:
        stalled = _abort_download(live.port, export)   # kept open, never read again
        try:
            time.sleep(4)
            assert not _idle_in_transaction(superuser)
            # The one handler thread is free again.
            assert httpx.get(live.url + "/healthz", timeout=10).status_code == 200
        finally:
            stalled.close()
        assert "export cut: the client took no data for 2 s" in (tmp_path / "stall.log").read_text()


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    """A cluster of this test's own: it is stopped and restarted under the server."""
    cluster = EmbeddedPostgres(tmp_path / "pg").start()
    try:
        yield cluster
    finally:
        cluster.stop(mode="immediate")


def test_postgresql_restart_and_stop_answer_503_and_recover(own_cluster: EmbeddedPostgres) -> None:
    """Item 7: after a restart the pool's dead connections gave 500 once each; a stopped server gave 500 on
    /healthz; 503 bodies carried the driver's message with the database host and port."""
    upgrade_all(bootstrap(own_cluster.url(), "restart"), out=lambda _: None)
    app_url = own_cluster.url(user=APP_ROLE, database="restart")
    engine = create_app_engine(app_url)
    ledger = Ledger(engine, LedgerConfig(database_url=Secret(app_url)))
    ledger.add_user("alice", actor="test")
    with engine.begin() as conn:
        token = tokens.issue(conn, name="a", role="admin", billing_user=None, expires_at=None, created_by="t").token
    try:
        with serving(create_app(ledger, ApiConfig(token_cache_seconds=0))) as url, \
                httpx.Client(base_url=url, timeout=30, limits=httpx.Limits(max_connections=8)) as c:
            def balances(n: int) -> list[int]:
                return [c.get("/v1/wallets/alice/balance", headers=bearer(token)).status_code for _ in range(n)]

            assert balances(5) == [200] * 5
            own_cluster.stop(mode="fast")
            own_cluster.start()
            assert balances(10) == [200] * 10
            own_cluster.stop(mode="fast")
            for response in (c.get("/healthz"), c.get("/v1/wallets/alice/balance", headers=bearer(token))):
                assert response.status_code == 503, response.text
                assert str(own_cluster.port) not in response.text and "127.0.0.1" not in response.text
                assert response.headers["Retry-After"] == "5"
            assert c.get("/v1/wallets/alice/balance", headers=bearer(token)).json()["error"]["code"] == (
                "ledger_unavailable")
            own_cluster.start()
            assert c.get("/healthz").status_code == 200 and balances(3) == [200] * 3
    finally:
        engine.dispose()
