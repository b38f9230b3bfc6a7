"""The rules enforcement follows in one tick: the environment's, with the newest admin settings version over them.

The API keeps settings as versions in ``api.settings_version`` (docs/api.md, "Settings"); a version holds
only the keys an admin set, and a key it leaves out keeps the environment's value, so the environment
stays the default. Parsing is pure and all-or-nothing: a version the controller cannot fully understand is
refused as a whole (``SettingsError``, naming the key) and the tick runs on the environment's rules,
because half of a threshold change could put users in tiers nobody chose.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from collector.config import TierPolicy
from ledger.errors import LedgerError
from ledger.money import parse_amount
from ledger.tiers import Thresholds

THRESHOLD_KEYS = ("tier_warning", "tier_limited", "tier_blocked")
MAX_KILL_GRACE_S = 30 * 86400
KNOWN_KEYS = frozenset((*THRESHOLD_KEYS, "kill_grace_seconds", "dry_run"))


@dataclass(frozen=True)
class Rules:
    thresholds: Thresholds
    policy: TierPolicy
    dry_run: bool
    settings_version: int | None = None


class SettingsError(ValueError):
    """Settings version ``version`` cannot be applied: ``key`` says which value, ``problem`` why."""

    def __init__(self, version: int, key: str, problem: str) -> None:
        super().__init__(f"settings version {version}: {key}: {problem}")
        self.version = version
        self.key = key
        self.problem = problem


def _thresholds(version: int, document: Mapping[str, Any], base: Thresholds) -> Thresholds:
    values = [base.warning, base.limited, base.blocked]
    for i, key in enumerate(THRESHOLD_KEYS):
        if key not in document:
            continue
        try:
            values[i] = parse_amount(document[key])
        except LedgerError as exc:
            raise SettingsError(version, key, str(exc)) from None
    warning, limited, blocked = values
    if not warning >= limited >= blocked:
        raise SettingsError(version, "tier_*", "thresholds must satisfy warning >= limited >= blocked")
    return Thresholds(warning=warning, limited=limited, blocked=blocked)


def apply_settings(defaults: Rules, version: int, document: Mapping[str, Any]) -> Rules:
    """``defaults`` with settings version ``version`` laid over them; unknown keys are the caller's to report."""
    grace = document.get("kill_grace_seconds", defaults.policy.kill_grace_s)
    if isinstance(grace, bool) or not isinstance(grace, int) or not 0 <= grace <= MAX_KILL_GRACE_S:
        raise SettingsError(version, "kill_grace_seconds", f"must be an integer from 0 to {MAX_KILL_GRACE_S}")
    dry_run = document.get("dry_run", defaults.dry_run)
    if not isinstance(dry_run, bool):
        raise SettingsError(version, "dry_run", "must be true or false")
    # An operator who started the controller dry (--dry-run or GPULEDGER_DRY_RUN) is testing it: settings
    # may make a live controller dry, never a dry one live.
    dry_run = dry_run or defaults.dry_run
    return Rules(
        thresholds=_thresholds(version, document, defaults.thresholds),
        policy=replace(defaults.policy, kill_grace_s=grace),
        dry_run=dry_run,
        settings_version=version,
    )
