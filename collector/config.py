"""Controller configuration, from the environment first (ledger.environ); a bad value fails fast naming its key.

Secrets (the database URL, the SMTP password, the webhook URL, which often embeds a token) are masked in
``repr`` and may come from a file named by ``<KEY>_FILE``. docs/controller.md lists every key.
"""

from __future__ import annotations

import ipaddress
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import MappingProxyType

from collector.charging.deltas import GPU_SPLITS, GpuSplit
from collector.types import QueueSettings
from ledger.environ import Config, Secret
from ledger.errors import ConfigError


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
    gpu_split: GpuSplit = "memory"
    policy: TierPolicy = field(default_factory=TierPolicy)
    local_node_command: tuple[str, ...] = (sys.executable, "-m", "probe")
    smtp: SmtpSettings | None = None
    webhook_url: Secret | None = None
    admin_emails: tuple[str, ...] = ()
    user_email_template: str | None = None
    recharge_hint: str = "Ask your lab's gpuledger admin to recharge."
    metrics_port: int | None = None
    # Loopback unless set: a central Prometheus needs the host's address (or "::"/"0.0.0.0" for all of them).
    metrics_address: str = "127.0.0.1"
    # Wallets (user:NAME, project:NAME) whose balance the metrics carry, at most METRICS_WALLETS_MAX of them: a
    # series a wallet, so the list is what bounds the cardinality (collector.metrics.WalletBalances says why).
    metrics_wallets: tuple[str, ...] = ()
    anchor_file: Path | None = None
    queue: QueueSettings | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ControllerConfig:
        """Build from ``environ`` (pass ``os.environ``); raises ``ConfigError`` naming the offending key."""
        env = Config(environ)
        database_url = env.secret("DATABASE_URL")
        if database_url is None:
            raise ConfigError(env.key("DATABASE_URL"), "is required (the app role's postgresql+psycopg:// URL)")
        inventory = env.get("INVENTORY", Path, None)
        if inventory is None:
            raise ConfigError(env.key("INVENTORY"), "is required (an Ansible inventory file or directory)")
        tick_s = env.get("TICK_SECONDS", _positive_float, 60.0)
        budget = env.get("TICK_BUDGET_SECONDS", _positive_float, tick_s * 0.75)
        if budget > tick_s:
            raise ConfigError(env.key("TICK_BUDGET_SECONDS"), f"must not exceed GPULEDGER_TICK_SECONDS ({tick_s})")
        split = env.choice("GPU_SPLIT", GPU_SPLITS, "memory")
        smtp_host = env.text("SMTP_HOST", None)
        smtp = None
        if smtp_host:
            smtp = SmtpSettings(
                host=smtp_host,
                port=env.integer("SMTP_PORT", 25, minimum=1, maximum=65535),
                sender=env.text("SMTP_FROM", "gpuledger@localhost"),
                username=env.text("SMTP_USER", None),
                password=env.secret("SMTP_PASSWORD"),
                starttls=env.boolean("SMTP_STARTTLS", False),
            )
        template = env.text("USER_EMAIL_TEMPLATE", None)
        if template is not None and "{user}" not in template:
            raise ConfigError(env.key("USER_EMAIL_TEMPLATE"), "must contain {user}, e.g. {user}@lab.example")
        return cls(
            database_url=database_url,
            inventory=inventory,
            ssh_key=env.get("SSH_KEY", Path, cls.ssh_key),
            known_hosts=env.get("KNOWN_HOSTS", Path, cls.known_hosts),
            tick_s=tick_s,
            tick_budget_s=budget,
            dry_run=env.boolean("DRY_RUN", False),
            connect_timeout_s=env.get("CONNECT_TIMEOUT_SECONDS", _positive_float, 10.0),
            command_timeout_s=env.get("COMMAND_TIMEOUT_SECONDS", _positive_float, 15.0),
            concurrency=env.integer("CONCURRENCY", 64, minimum=1),
            sample_retention_days=env.integer("SAMPLE_RETENTION_DAYS", 30, minimum=1),
            decision_retention_days=env.integer("DECISION_RETENTION_DAYS", 90, minimum=1),
            connection_test_poll_s=env.get("CONNECTION_TEST_POLL_SECONDS", _positive_float, 2.0),
            max_gap_s=env.integer("MAX_GAP_SECONDS", 3600, minimum=1),
            skew_threshold_s=env.integer("SKEW_THRESHOLD_SECONDS", 30, minimum=1),
            gpu_split=split,
            policy=TierPolicy(
                limited_cpu_percent=env.get("CPU_QUOTA_LIMITED_PERCENT", _percent, TierPolicy.limited_cpu_percent),
                blocked_cpu_percent=env.get("CPU_QUOTA_BLOCKED_PERCENT", _percent, TierPolicy.blocked_cpu_percent),
                kill_grace_s=env.integer("KILL_GRACE_SECONDS", 600),
            ),
            local_node_command=env.get("LOCAL_NODE_COMMAND", _argv, cls.local_node_command),
            smtp=smtp,
            webhook_url=_webhook(env.key("WEBHOOK_URL"), env.secret("WEBHOOK_URL")),
            admin_emails=_emails(env.key("ADMIN_EMAILS"), env.items("ADMIN_EMAILS")),
            user_email_template=template,
            recharge_hint=env.text("RECHARGE_HINT", cls.recharge_hint),
            metrics_port=env.integer("METRICS_PORT", None, minimum=1, maximum=65535),
            metrics_address=env.get("METRICS_ADDRESS", _ip_literal, cls.metrics_address),
            metrics_wallets=_wallets(env.key("METRICS_WALLETS"), env.items("METRICS_WALLETS")),
            anchor_file=env.get("ANCHOR_FILE", _optional_path, _state_file(environ, "chain-anchors")),
            queue=_queue(env) if env.boolean("QUEUE", False) else None,
        )


def _queue(env: Config) -> QueueSettings:
    """``QUEUE_UNGRANTED``: ``POOL=LEVEL`` items (``*`` for every other pool), levels 0, 1 or 2."""
    key = env.key("QUEUE_UNGRANTED")
    levels: dict[str, int] = {}
    for item in env.items("QUEUE_UNGRANTED"):
        pool, sep, level = item.partition("=")
        if not sep or not pool.strip() or level.strip() not in ("0", "1", "2"):
            raise ConfigError(key, f"item {item[:40]!r} is not POOL=LEVEL with a level 0, 1 or 2 (e.g. *=1,rtx-3090=2)")
        if pool.strip() in levels:
            raise ConfigError(key, f"pool {pool.strip()[:40]!r} is given twice")
        levels[pool.strip()] = int(level)
    default = levels.pop("*", 0)
    return QueueSettings(levels=MappingProxyType(levels), default_level=default,
                         grace_s=env.integer("QUEUE_UNGRANTED_GRACE_SECONDS", 600, minimum=0, maximum=86400))


def _optional_path(text: str) -> Path | None:
    return Path(text) if text.strip() else None


def _state_file(environ: Mapping[str, str], name: str) -> Path | None:
    """``name`` in the service's state directory (systemd's StateDirectory= sets STATE_DIRECTORY), else None."""
    state = environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(state) / name if state else None


def _ip_literal(text: str) -> str:
    """An IP address, not a name: a name resolving to several addresses would make the listener a guess."""
    return str(ipaddress.ip_address(text.strip()))


METRICS_WALLETS_MAX = 100


def _wallets(key: str, wallets: tuple[str, ...]) -> tuple[str, ...]:
    if len(wallets) > METRICS_WALLETS_MAX:
        raise ConfigError(key, f"lists {len(wallets)} wallets; at most {METRICS_WALLETS_MAX} (a series each)")
    for wallet in wallets:
        owner, _, name = wallet.partition(":")
        if owner not in ("user", "project") or not name:
            raise ConfigError(key, f"{wallet!r} is not user:NAME or project:NAME")
    return tuple(dict.fromkeys(wallets))


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("must be a number of seconds") from None
    if not value > 0 or value != value or value == float("inf"):
        raise ValueError("must be a positive, finite number")
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


def _webhook(key: str, url: Secret | None) -> Secret | None:
    # urllib would also open file:// and ftp:// URLs; a webhook is HTTP(S) only.
    if url is not None and not url.reveal().startswith(("http://", "https://")):
        raise ConfigError(key, "must be an http:// or https:// URL")
    return url


def _emails(key: str, addresses: tuple[str, ...]) -> tuple[str, ...]:
    for address in addresses:
        if "@" not in address or any(c.isspace() for c in address):
            raise ConfigError(key, f"{address!r} is not an e-mail address")
    return addresses
