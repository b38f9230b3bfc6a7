"""Recently authenticated tokens, kept in memory for a few seconds so that a request does not pay a database
round trip (and a thread hop) to check its bearer token: that lookup was half the cost of a balance call.

An entry is found by the token's lookup prefix (public) and then the token's SHA-256 is compared in constant
time, as against the database row; only tokens that passed the database check are ever stored. Expiry is
checked on every hit, so it stays exact. A revocation through this process's API drops the entry at once;
one made elsewhere (``gpuledger api token revoke``, another worker process) takes effect within ``ttl``
seconds. ``ttl`` 0 turns the cache off: every request reads the token row."""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from api.tokens import Grant, Principal, digest, prefix_of


@dataclass(frozen=True)
class _Entry:
    sha256: bytes
    grant: Grant
    fetched: float


def _utcnow() -> datetime:
    return datetime.now(UTC)


class TokenCache:
    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic,
                 now: Callable[[], datetime] = _utcnow) -> None:
        self._ttl = ttl
        self._clock = clock
        self._now = now
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def get(self, token: str) -> Principal | None:
        """The principal of a token seen valid less than ``ttl`` seconds ago and not expired since; None means
        "ask the database", not "invalid"."""
        prefix = prefix_of(token)
        if prefix is None:
            return None
        with self._lock:
            entry = self._entries.get(prefix)
            if entry is None:
                return None
            expires = entry.grant.expires_at
            if self._clock() - entry.fetched >= self._ttl or (expires is not None and expires <= self._now()):
                del self._entries[prefix]
                return None
        return entry.grant.principal if hmac.compare_digest(entry.sha256, digest(token)) else None

    def put(self, token: str, grant: Grant) -> None:
        """Remember a token the database has just found valid."""
        prefix = prefix_of(token)
        if self._ttl > 0 and prefix is not None:
            with self._lock:
                self._entries[prefix] = _Entry(digest(token), grant, self._clock())

    def forget(self, prefix: str) -> None:
        """Drop a token (revoked through this process) so its next request is checked in the database."""
        with self._lock:
            self._entries.pop(prefix, None)
