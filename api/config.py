"""API configuration, env-first (``GPULEDGER_API_*``); a bad value fails fast naming its key."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ledger.errors import ConfigError

PREFIX = "GPULEDGER_API_"


@dataclass(frozen=True)
class ApiConfig:
    host: str = "127.0.0.1"
    port: int = 8470
    # Failed authentications per client address within the window before it gets 429.
    auth_failures: int = 10
    auth_window_seconds: int = 60
    # A token found valid is trusted this long without asking the database again (0: ask every time); a
    # revocation made outside this process takes effect within it (api.tokencache).
    token_cache_seconds: int = 5
    # Handlers run in threads (their database calls are synchronous); at most this many at once. No more than
    # the ledger engine's pool_size (5): a thread beyond it waits for a connection or opens an overflow one
    # that is closed again on return, and under CPU contention those extra threads and connections turned a
    # backlog into second-long tails. Requests beyond it wait on the event loop, which costs nothing.
    db_threads: int = 5
    max_page: int = 500
    max_report_days: int = 366
    max_export_days: int = 366

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ApiConfig:
        defaults = cls()
        return cls(
            host=environ.get(PREFIX + "HOST", defaults.host),
            port=_int(environ, "PORT", defaults.port, 1, 65535),
            auth_failures=_int(environ, "AUTH_FAILURES", defaults.auth_failures, 1, 10_000),
            auth_window_seconds=_int(environ, "AUTH_WINDOW_SECONDS", defaults.auth_window_seconds, 1, 86_400),
            token_cache_seconds=_int(environ, "TOKEN_CACHE_SECONDS", defaults.token_cache_seconds, 0, 300),
            db_threads=_int(environ, "DB_THREADS", defaults.db_threads, 1, 64),
            max_page=_int(environ, "MAX_PAGE", defaults.max_page, 1, 10_000),
            max_report_days=_int(environ, "MAX_REPORT_DAYS", defaults.max_report_days, 1, 3660),
            max_export_days=_int(environ, "MAX_EXPORT_DAYS", defaults.max_export_days, 1, 3660),
        )


def _int(environ: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    key = PREFIX + name
    raw = environ.get(key)
    if raw is None:
        return default
    if not raw.isdigit() or not lo <= int(raw) <= hi:
        raise ConfigError(key, f"must be an integer in [{lo}, {hi}], got {raw!r}")
    return int(raw)
