"""API configuration, env-first (``GPULEDGER_API_*``, read by ledger.environ); a bad value fails fast naming its key."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.environ import PREFIX, Config
from ledger.errors import ConfigError


@dataclass(frozen=True)
class ApiConfig:
    host: str = "127.0.0.1"
    port: int = 8470
    # Failed authentications (a missing, malformed or unknown token) per client address within the window before
    # it gets 429; a valid token is still accepted from such an address (api.ratelimit).
    auth_failures: int = 10
    auth_window_seconds: int = 60
    # Addresses the limiter tracks at most; past that the one that failed longest ago is forgotten, so a flood
    # from many addresses costs bounded memory (~1 KiB an address).
    auth_table_size: int = 10_000
    # Addresses (or networks) of the reverse proxies whose X-Forwarded-For/-Proto uvicorn honours; empty: none,
    # the TCP peer is the client. uvicorn's own default trusts 127.0.0.1, so any local process could pose as any
    # address and dodge the failed-authentication limit.
    trusted_proxies: tuple[str, ...] = ()
    # A request body over this many bytes is refused with 413 before it is read whole (JSON bodies here are a
    # few hundred bytes; a 200 MB one cost 1.7 GB of memory to parse and validate).
    max_body_bytes: int = 1024 * 1024
    # PostgreSQL ends an API session idle inside a transaction this long (idle_in_transaction_session_timeout),
    # and an export whose client has not taken the next chunk for this long is cut: a stalled download must not
    # hold a snapshot (which holds back vacuum) and one of the db_threads forever. 0 turns both off.
    idle_in_transaction_seconds: int = 60
    # A token found valid is trusted this long without asking the database again (0: ask every time); a
    # revocation made outside this process takes effect within it (api.tokencache).
    token_cache_seconds: int = 5
    # Handlers run in threads (their database calls are synchronous); at most this many at once. No more than
    # the ledger engine's pool_size (5): a thread beyond it waits for a connection or opens an overflow one
    # that is closed again on return, and under CPU contention those extra threads and connections turned a
    # backlog into second-long tails. Requests beyond it wait on the event loop, which costs nothing.
    db_threads: int = 5
    # A listener of its own for /metrics (as the controller's GPULEDGER_METRICS_*), so a central Prometheus can
    # scrape it while the API itself stays on loopback behind its proxy; no port: none (the API's /metrics stays).
    metrics_port: int | None = None
    metrics_address: str = "127.0.0.1"
    max_page: int = 500
    max_report_days: int = 366
    max_export_days: int = 366
    # Console sessions (api.console.sessions) end after this long without a request, and this long after login
    # whatever happens; a revoked or expired token ends its sessions at once.
    console_idle_seconds: int = 30 * 60
    console_max_seconds: int = 12 * 3600
    # Console cookies get the Secure flag when the request came over https (uvicorn's TLS, or a trusted proxy's
    # X-Forwarded-Proto); this forces it for a TLS proxy the API does not trust with forwarded headers.
    console_secure_cookies: bool = False
    # SSH-proven login starts (api.console.pages.login_ssh) per client address within auth_window_seconds:
    # each start is a row and makes the controller poll every node until it is proven or expires.
    console_login_starts: int = 10
    # uvicorn's own TLS with the admin's certificate chain and key (PEM files), both or neither. With them every
    # response carries HSTS and console cookies are Secure (api.app.Hsts: any request that came over https).
    tls_cert_file: str | None = None
    tls_key_file: str | None = None

    @property
    def console_url(self) -> str:
        """Where the console answers, as ``gpuledger run`` prints it (a wildcard listen address is printed as
        given: the lab's name for the host is not known here)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls_cert_file else 'http'}://{host}:{self.port}/"

    def uvicorn_options(self) -> dict[str, Any]:
        """What every uvicorn serving the API gets (``gpuledger api serve``, ``gpuledger run``, the tests):
        forwarded headers only from the named proxies, else uvicorn's proxy handling off altogether."""
        tls = {"ssl_certfile": self.tls_cert_file, "ssl_keyfile": self.tls_key_file} if self.tls_cert_file else {}
        return {"host": self.host, "port": self.port, "proxy_headers": bool(self.trusted_proxies),
                "forwarded_allow_ips": ",".join(self.trusted_proxies), **tls}

    def session_settings(self) -> dict[str, str]:
        """PostgreSQL settings for the API's own engine. Per connection, not ``ALTER ROLE``: the controller and
        the CLI log in as the same app role, and a limit chosen for HTTP clients is not theirs to live with."""
        return {"idle_in_transaction_session_timeout": f"{self.idle_in_transaction_seconds}s"}

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ApiConfig:
        defaults = cls()
        env = Config(environ, PREFIX + "API_")
        return cls(
            host=env.text("HOST", defaults.host),
            port=env.integer("PORT", defaults.port, minimum=1, maximum=65535),
            auth_failures=env.integer("AUTH_FAILURES", defaults.auth_failures, minimum=1, maximum=1_000_000),
            auth_window_seconds=env.integer("AUTH_WINDOW_SECONDS", defaults.auth_window_seconds, minimum=1,
                                            maximum=86_400),
            auth_table_size=env.integer("AUTH_TABLE_SIZE", defaults.auth_table_size, minimum=1, maximum=10_000_000),
            trusted_proxies=_addresses(env.key("TRUSTED_PROXIES"), env.items("TRUSTED_PROXIES")),
            max_body_bytes=env.integer("MAX_BODY_BYTES", defaults.max_body_bytes, minimum=1024, maximum=1024**3),
            idle_in_transaction_seconds=env.integer("IDLE_IN_TRANSACTION_SECONDS",
                                                    defaults.idle_in_transaction_seconds, maximum=86_400),
            token_cache_seconds=env.integer("TOKEN_CACHE_SECONDS", defaults.token_cache_seconds, maximum=300),
            db_threads=env.integer("DB_THREADS", defaults.db_threads, minimum=1, maximum=64),
            metrics_port=env.integer("METRICS_PORT", None, minimum=1, maximum=65535),
            metrics_address=env.get("METRICS_ADDRESS", _ip_literal, defaults.metrics_address),
            max_page=env.integer("MAX_PAGE", defaults.max_page, minimum=1, maximum=10_000),
            max_report_days=env.integer("MAX_REPORT_DAYS", defaults.max_report_days, minimum=1, maximum=3660),
            max_export_days=env.integer("MAX_EXPORT_DAYS", defaults.max_export_days, minimum=1, maximum=3660),
            console_idle_seconds=env.integer("CONSOLE_IDLE_SECONDS", defaults.console_idle_seconds, minimum=60,
                                             maximum=7 * 86_400),
            console_max_seconds=env.integer("CONSOLE_MAX_SECONDS", defaults.console_max_seconds, minimum=60,
                                            maximum=30 * 86_400),
            console_secure_cookies=env.boolean("CONSOLE_SECURE_COOKIES", defaults.console_secure_cookies),
            console_login_starts=env.integer("CONSOLE_LOGIN_STARTS", defaults.console_login_starts, minimum=1,
                                             maximum=1_000_000),
            **_tls_files(env),
        )


def _tls_files(env: Config) -> dict[str, str | None]:
    """The certificate and key files, both or neither, each a readable file now (not at the first handshake)."""
    given = {name: env.get(f"TLS_{name.upper()}_FILE", _readable_file, None) for name in ("cert", "key")}
    if (given["cert"] is None) != (given["key"] is None):
        missing = env.key("TLS_KEY_FILE" if given["key"] is None else "TLS_CERT_FILE")
        raise ConfigError(missing, "must be set too: TLS needs both the certificate and the key file")
    return {"tls_cert_file": given["cert"], "tls_key_file": given["key"]}


def _readable_file(text: str) -> str:
    path = Path(text.strip())
    if not path.is_absolute():
        raise ValueError(f"must be an absolute path, got {text!r}")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ValueError(f"cannot be read: {exc.strerror} ({text!r})") from None
    return str(path)


def _ip_literal(text: str) -> str:
    """An IP address, not a name (a name resolving to several addresses would make the listener a guess)."""
    return str(ipaddress.ip_address(text.strip()))


def _addresses(key: str, items: tuple[str, ...]) -> tuple[str, ...]:
    """IP addresses or networks; a name or ``*`` is refused (the proxy must be named)."""
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError as exc:
            raise ConfigError(key, f"must list IP addresses or networks (e.g. 10.0.0.5,10.1.0.0/16), got {item!r}"
                              ) from exc
    return items
