"""The rules enforcement follows in one tick: the environment's, with the newest admin settings version over them.

Settings are kept as versions in ``control.settings_version`` (``control.versions``; docs/api.md, "Settings");
a version holds only the keys an admin set, and a key it leaves out keeps the environment's value, so the
environment stays the default. The version is parsed by ``control.settings.parse``, the rule the API stores by, all or
nothing: a version it refuses (``SettingsError``, naming the key) leaves the tick on the environment's rules.
The GPU queue's policy has no environment keys: what a version leaves out is ``Policy``'s default.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from collector.config import TierPolicy
from control.queue.records import Policy
from control.settings import Settings
from ledger.tiers import Thresholds


@dataclass(frozen=True)
class Rules:
    thresholds: Thresholds
    policy: TierPolicy
    dry_run: bool
    settings_version: int | None = None
    queue: Policy = Policy()


def lay_over(defaults: Rules, version: int, settings: Settings) -> Rules:
    """``defaults`` with the keys ``settings`` holds (version ``version``, parsed over ``defaults.thresholds``)."""
    grace = defaults.policy.kill_grace_s if settings.kill_grace_s is None else settings.kill_grace_s
    return Rules(
        thresholds=settings.thresholds or defaults.thresholds,
        policy=replace(defaults.policy, kill_grace_s=grace),
        # An operator who started the controller dry (--dry-run or GPULEDGER_DRY_RUN) is testing it: settings
        # may make a live controller dry, never a dry one live.
        dry_run=bool(settings.dry_run) or defaults.dry_run,
        settings_version=version,
        queue=settings.queue_policy(),
    )
