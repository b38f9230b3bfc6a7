"""Ledger configuration, read from the environment first; a bad or missing value fails fast naming its key.

Database URLs are secrets (they may hold a password): they are masked in ``repr`` and may come from a file
named by ``<KEY>_FILE`` instead (systemd credentials, Docker secrets).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ledger.errors import ConfigError, LedgerError
from ledger.money import parse_amount
from ledger.tiers import Thresholds

PREFIX = "GPULEDGER_"


@dataclass(frozen=True)
class Secret:
    """A string that never shows itself in ``repr`` or ``str`` (logs, tracebacks)."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__


@dataclass(frozen=True)
class LedgerConfig:
    database_url: Secret
    admin_database_url: Secret | None = None
    currency: str = "CNY"
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))
    thresholds: Thresholds = field(default_factory=Thresholds)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> LedgerConfig:
        """Build from ``environ`` (pass ``os.environ``); raises ConfigError naming the offending key."""
        database_url = _secret(environ, "DATABASE_URL")
        if database_url is None:
            raise ConfigError(PREFIX + "DATABASE_URL", "is required (the app role's postgresql+psycopg:// URL)")
        currency = environ.get(PREFIX + "CURRENCY", "CNY")
        if not re.fullmatch(r"[A-Z]{3}", currency):
            raise ConfigError(PREFIX + "CURRENCY", f"must be three upper-case letters, got {currency!r}")
        tz_name = environ.get(PREFIX + "TIMEZONE", "Asia/Shanghai")
        try:
            timezone = ZoneInfo(tz_name)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(PREFIX + "TIMEZONE", f"unknown time zone {tz_name!r}") from exc
        defaults = Thresholds()
        warning, limited, blocked = (
            _amount(environ, "TIER_" + name, default)
            for name, default in (("WARNING", defaults.warning), ("LIMITED", defaults.limited),
                                  ("BLOCKED", defaults.blocked))
        )
        if not warning >= limited >= blocked:
            raise ConfigError(PREFIX + "TIER_WARNING", "tier thresholds must satisfy WARNING >= LIMITED >= BLOCKED")
        return cls(
            database_url=database_url,
            admin_database_url=_secret(environ, "ADMIN_DATABASE_URL"),
            currency=currency,
            timezone=timezone,
            thresholds=Thresholds(warning=warning, limited=limited, blocked=blocked),
        )


def _secret(environ: Mapping[str, str], name: str) -> Secret | None:
    key = PREFIX + name
    if key in environ:
        return Secret(environ[key])
    file_key = key + "_FILE"
    if file_key in environ:
        try:
            return Secret(Path(environ[file_key]).read_text(encoding="utf-8").strip())
        except OSError as exc:
            raise ConfigError(file_key, f"cannot read {environ[file_key]!r}: {exc.strerror}") from exc
    return None


def _amount(environ: Mapping[str, str], name: str, default: int) -> int:
    key = PREFIX + name
    if key not in environ:
        return default
    try:
        return parse_amount(environ[key])
    except LedgerError as exc:
        raise ConfigError(key, exc.message) from exc
