"""Ledger configuration, read from the environment first (ledger.environ); a bad or missing value fails fast
naming its key.

Database URLs are secrets (they may hold a password): masked in ``repr``, and they may come from a file
named by ``<KEY>_FILE`` instead (systemd credentials, Docker secrets).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ledger.environ import Config, Secret
from ledger.errors import ConfigError
from ledger.tiers import Thresholds


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
        env = Config(environ)
        database_url = env.secret("DATABASE_URL")
        if database_url is None:
            raise ConfigError(env.key("DATABASE_URL"), "is required (the app role's postgresql+psycopg:// URL)")
        currency = env.get("CURRENCY", _currency, "CNY")
        timezone = env.get("TIMEZONE", _timezone, ZoneInfo("Asia/Shanghai"))
        defaults = Thresholds()
        warning = env.amount("TIER_WARNING", defaults.warning)
        limited = env.amount("TIER_LIMITED", defaults.limited)
        blocked = env.amount("TIER_BLOCKED", defaults.blocked)
        if not warning >= limited >= blocked:
            raise ConfigError(env.key("TIER_WARNING"), "tier thresholds must satisfy WARNING >= LIMITED >= BLOCKED")
        return cls(
            database_url=database_url,
            admin_database_url=env.secret("ADMIN_DATABASE_URL"),
            currency=currency,
            timezone=timezone,
            thresholds=Thresholds(warning=warning, limited=limited, blocked=blocked),
        )


def _currency(text: str) -> str:
    if not re.fullmatch(r"[A-Z]{3}", text):
        raise ValueError(f"must be three upper-case letters, got {text!r}")
    return text


def _timezone(text: str) -> ZoneInfo:
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {text!r}") from None
