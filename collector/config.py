"""Controller configuration, from the environment first; a bad value fails fast naming its key.

Secrets (the database URL, the SMTP password, the webhook URL, which often embeds a token) are masked in
``repr`` and may come from a file named by ``<KEY>_FILE``. docs/controller.md lists every key.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TypeVar

from collector.errors import ConfigError
from ledger.config import Secret

PREFIX = "GPULEDGER_"
T = TypeVar("T")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})
GPU_SPLITS = ("memory", "equal")


@dataclass(frozen=True)
class TierPolicy:
    """What each tier means on a node. CPU quotas are percentages of the node's CPUs (``None`` = none)."""

    limited_cpu_percent: Decimal | None = Decimal(50)
    blocked_cpu_percent: Decimal | None = Decimal(10)
    kill_grace_s: int = 600


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int = 25
    sender: str = "gpuledger@localhost"
    username: str | None = None
    password: Secret | None = None
    starttls: bool = False


@dataclass(frozen=True)
class ControllerConfig:
    database_url: Secret
    inventory: Path
    ssh_key: Path = Path("/etc/gpuledger/ssh/id_ed25519")
    known_hosts: Path = Path("/etc/gpuledger/ssh/known_hosts")
    tick_s: float = 60.0
    tick_budget_s: float = 45.0
    dry_run: bool = False
    connect_timeout_s: float = 10.0
    command_timeout_s: float = 15.0
    concurrency: int = 64
    sample_retention_days: int = 30
    decision_retention_days: int = 90
    connection_test_poll_s: float = 2.0
    max_gap_s: int = 3600
    skew_threshold_s: int = 30
    gpu_split: str = "memory"
    policy: TierPolicy = field(default_factory=TierPolicy)
    local_node_command: tuple[str, ...] = (sys.executable, "-m", "probe")
    smtp: SmtpSettings | None = None
    webhook_url: Secret | None = None
    admin_emails: tuple[str, ...] = ()
    user_email_template: str | None = None
    recharge_hint: str = "Ask your lab's gpuledger admin to recharge."
    metrics_port: int | None = None
    anchor_file: Path | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ControllerConfig:
        """Build from ``environ`` (pass ``os.environ``); raises ``ConfigError`` naming the offending key."""
        env = _Env(environ)
        database_url = env.secret("DATABASE_URL")
        if database_url is None:
            raise ConfigError(PREFIX + "DATABASE_URL", "is required (the app role's postgresql+psycopg:// URL)")
        inventory = env.get("INVENTORY", Path, None)
        if inventory is None:
            raise ConfigError(PREFIX + "INVENTORY", "is required (an Ansible inventory file or directory)")
        tick_s = env.get("TICK_SECONDS", _positive_float, 60.0)
        budget = env.get("TICK_BUDGET_SECONDS", _positive_float, tick_s * 0.75)
        if budget > tick_s:
            raise ConfigError(PREFIX + "TICK_BUDGET_SECONDS", f"must not exceed GPULEDGER_TICK_SECONDS ({tick_s})")
        split = env.get("GPU_SPLIT", str, "memory")
        if split not in GPU_SPLITS:
            raise ConfigError(PREFIX + "GPU_SPLIT", f"must be one of {', '.join(GPU_SPLITS)}")
        smtp_host = env.get("SMTP_HOST", str, None)
        smtp = None
        if smtp_host:
            smtp = SmtpSettings(
                host=smtp_host,
                port=env.get("SMTP_PORT", _port, 25),
                sender=env.get("SMTP_FROM", str, "gpuledger@localhost"),
                username=env.get("SMTP_USER", str, None),
                password=env.secret("SMTP_PASSWORD"),
                starttls=env.get("SMTP_STARTTLS", _bool, False),
            )
        template = env.get("USER_EMAIL_TEMPLATE", str, None)
        if template is not None and "{user}" not in template:
            raise ConfigError(PREFIX + "USER_EMAIL_TEMPLATE", "must contain {user}, e.g. {user}@lab.example")
        return cls(
            database_url=database_url,
            inventory=inventory,
            ssh_key=env.get("SSH_KEY", Path, cls.ssh_key),
            known_hosts=env.get("KNOWN_HOSTS", Path, cls.known_hosts),
            tick_s=tick_s,
            tick_budget_s=budget,
            dry_run=env.get("DRY_RUN", _bool, False),
            connect_timeout_s=env.get("CONNECT_TIMEOUT_SECONDS", _positive_float, 10.0),
            command_timeout_s=env.get("COMMAND_TIMEOUT_SECONDS", _positive_float, 15.0),
            concurrency=env.get("CONCURRENCY", _positive_int, 64),
            sample_retention_days=env.get("SAMPLE_RETENTION_DAYS", _positive_int, 30),
            decision_retention_days=env.get("DECISION_RETENTION_DAYS", _positive_int, 90),
            connection_test_poll_s=env.get("CONNECTION_TEST_POLL_SECONDS", _positive_float, 2.0),
            max_gap_s=env.get("MAX_GAP_SECONDS", _positive_int, 3600),
            skew_threshold_s=env.get("SKEW_THRESHOLD_SECONDS", _positive_int, 30),
            gpu_split=split,
            policy=TierPolicy(
                limited_cpu_percent=env.get("CPU_QUOTA_LIMITED_PERCENT", _percent, TierPolicy.limited_cpu_percent),
                blocked_cpu_percent=env.get("CPU_QUOTA_BLOCKED_PERCENT", _percent, TierPolicy.blocked_cpu_percent),
                kill_grace_s=env.get("KILL_GRACE_SECONDS", _non_negative_int, 600),
            ),
            local_node_command=env.get("LOCAL_NODE_COMMAND", _argv, cls.local_node_command),
            smtp=smtp,
            webhook_url=_webhook(env.secret("WEBHOOK_URL")),
            admin_emails=env.get("ADMIN_EMAILS", _emails, ()),
            user_email_template=template,
            recharge_hint=env.get("RECHARGE_HINT", str, cls.recharge_hint),
            metrics_port=env.get("METRICS_PORT", _port, None),
            anchor_file=env.get("ANCHOR_FILE", _optional_path, _state_file(environ, "chain-anchors")),
        )


class _Env:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def get(self, name: str, parse: Callable[[str], T], default: T) -> T:
        key = PREFIX + name
        if key not in self._environ:
            return default
        try:
            return parse(self._environ[key])
        except ValueError as exc:
            raise ConfigError(key, str(exc)) from None

    def secret(self, name: str) -> Secret | None:
        key = PREFIX + name
        if key in self._environ:
            return Secret(self._environ[key])
        file_key = key + "_FILE"
        if file_key in self._environ:
            try:
                return Secret(Path(self._environ[file_key]).read_text(encoding="utf-8").strip())
            except OSError as exc:
                raise ConfigError(file_key, f"cannot read the file it names: {exc.strerror}") from None
        return None


def _optional_path(text: str) -> Path | None:
    return Path(text) if text.strip() else None


def _state_file(environ: Mapping[str, str], name: str) -> Path | None:
    """``name`` in the service's state directory (systemd's StateDirectory= sets STATE_DIRECTORY), else None."""
    state = environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(state) / name if state else None


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("must be true or false")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("must be a number of seconds") from None
    if not value > 0 or value != value or value == float("inf"):
        raise ValueError("must be a positive, finite number")
    return value


def _positive_int(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise ValueError("must be a positive integer")
    return int(text)


def _non_negative_int(text: str) -> int:
    if not text.strip().isdigit():
        raise ValueError("must be a non-negative integer")
    return int(text)


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise ValueError("must be a TCP port (1-65535)")
    return value


def _percent(text: str) -> Decimal | None:
    if text.strip() == "":
        return None
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError("must be a percentage of the node's CPUs, e.g. 10 or 2.5, or empty for none") from None
    if not value.is_finite() or not Decimal(0) < value <= Decimal(100) or value != value.quantize(Decimal("0.0001")):
        raise ValueError("must be in (0, 100] with at most four decimals")
    return value


def _argv(text: str) -> tuple[str, ...]:
    words = tuple(shlex.split(text))
    if not words:
        raise ValueError("must name a command")
    return words


def _webhook(url: Secret | None) -> Secret | None:
    # urllib would also open file:// and ftp:// URLs; a webhook is HTTP(S) only.
    if url is not None and not url.value.startswith(("http://", "https://")):
        raise ConfigError(PREFIX + "WEBHOOK_URL", "must be an http:// or https:// URL")
    return url


def _emails(text: str) -> tuple[str, ...]:
    addresses = tuple(a.strip() for a in text.split(",") if a.strip())
    for address in addresses:
        if "@" not in address or any(c.isspace() for c in address):
            raise ValueError(f"{address!r} is not an e-mail address")
    return addresses
