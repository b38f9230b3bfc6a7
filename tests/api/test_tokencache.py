"""The token cache: a hit only for the exact token, within its ttl, before its expiry; revocation through the API
is immediate, revocation elsewhere within the ttl (and immediate with the cache off)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from api import tokens
from api.app import create_app
from api.config import ApiConfig
from api.tokencache import TokenCache
from api.tokens import Grant, Principal
from ledger.service import Ledger
from tests.api.conftest import bearer, serving

NOW = datetime(2026, 3, 1, tzinfo=UTC)
ALICE = Principal(7, "alice-laptop", "user", "alice")


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def cache(ttl: float = 5) -> tuple[TokenCache, Clock, list[datetime]]:
    clock, now = Clock(), [NOW]
    return TokenCache(ttl, clock, lambda: now[0]), clock, now


def test_a_cached_token_is_trusted_for_ttl_seconds_then_checked_again() -> None:
    c, clock, _ = cache(ttl=5)
    token = tokens.new_token()[0]
    assert c.get(token) is None
    c.put(token, Grant(ALICE, None))
    clock.t += 4.9
    assert c.get(token) == ALICE
    clock.t += 0.1
    assert c.get(token) is None


def test_only_the_exact_token_hits_and_a_wrong_secret_does_not_evict_it() -> None:
    c, _, _ = cache()
    token = tokens.new_token()[0]
    c.put(token, Grant(ALICE, None))
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")   # same lookup prefix, other secret
    assert c.get(forged) is None
    assert c.get("not a token") is None
    assert c.get(token) == ALICE


def test_expiry_is_exact_even_within_the_ttl() -> None:
    c, _, now = cache(ttl=300)
    token = tokens.new_token()[0]
    c.put(token, Grant(ALICE, NOW + timedelta(seconds=1)))
    assert c.get(token) == ALICE
    now[0] = NOW + timedelta(seconds=1)
    assert c.get(token) is None


def test_forget_drops_the_token_and_ttl_zero_caches_nothing() -> None:
    c, _, _ = cache()
    token, prefix, _ = tokens.new_token()
    c.put(token, Grant(ALICE, None))
    c.forget(prefix)
    assert c.get(token) is None
    off, _, _ = cache(ttl=0)
    off.put(token, Grant(ALICE, None))
    assert off.get(token) is None


def test_revocation_outside_the_api_applies_at_once_with_the_cache_off(ledger: Ledger) -> None:
    with ledger.engine.begin() as conn:
        made = tokens.issue(conn, name="cli-made", role="auditor", billing_user=None, expires_at=None,
                            created_by="test")
    with serving(create_app(ledger, ApiConfig(token_cache_seconds=0))) as url, httpx.Client(base_url=url) as c:
        assert c.get("/v1/me", headers=bearer(made.token)).status_code == 200
        with ledger.engine.begin() as conn:
            tokens.revoke(conn, made.info.id)   # what `gpuledger api token revoke` does
        assert c.get("/v1/me", headers=bearer(made.token)).status_code == 401
