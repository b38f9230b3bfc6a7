"""A settings version: which keys it may hold, what each value must be, and the one parse-and-merge rule the
API stores by and the controller applies by (docs/api.md, "Settings"). The ``queue_`` keys are the GPU queue's
policy (docs/queue.md, "Configuration"): ``Settings.queue_policy`` is the ``Policy`` a version asks for, the
one the controller's tick and the API's queue operations both run by.

One parser for both sides is the point: a value the API stored but the controller refused made the
controller drop the whole version (and, since a PUT merges, every later one) while the API showed it in
force. So ``parse`` is strict where JSON is loose: an integer is a JSON integer (``json`` gives a float for
``60.0`` and ``1e3``), a boolean is ``true``/``false``, an amount is decimal text with at most six decimals.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from control.queue.records import Policy
from control.versions import Version
from ledger.accounts import NAME_RULE
from ledger.errors import LedgerError
from ledger.money import format_amount, parse_amount, parse_decimal
from ledger.tiers import Thresholds

THRESHOLD_KEYS = ("tier_warning", "tier_limited", "tier_blocked")
# The key a threshold-order problem is reported under: no one of the three is wrong on its own.
THRESHOLD_ORDER = "tier_*"
KILL_GRACE = "kill_grace_seconds"
DRY_RUN = "dry_run"
MAX_KILL_GRACE_S = 30 * 86400

# The queue's keys. Each integer key: its Policy field and its bounds. A request holds at most 64 GPUs and
# 168 hours (the queue's table checks both), so the caps stop there; an offer shorter than a minute expires
# before its user's next tick could see it.
QUEUE_INTEGERS: Mapping[str, tuple[str, int, int]] = MappingProxyType({
    "queue_offer_seconds": ("offer_s", 60, 86400),
    "queue_max_gpus_per_user": ("max_gpus_per_user", 1, 64),
    "queue_max_gpus_per_project": ("max_gpus_per_project", 1, 100_000),
    "queue_max_queued_per_user": ("max_queued_per_user", 1, 1000),
    "queue_admin_boost_cap_hours": ("admin_boost_cap_hours", 0, 8760),
})
# Hours are decimal text (or a JSON integer) with at most 2 decimals, as a request's hours are stored.
QUEUE_DEFAULT_HOURS = "queue_default_hours"
QUEUE_MAX_HOURS = "queue_max_hours"
QUEUE_HOURS_KEYS = (QUEUE_DEFAULT_HOURS, QUEUE_MAX_HOURS)
MAX_QUEUE_HOURS = Decimal(168)
# The key the default-within-maximum problem is reported under (as for the thresholds' order).
QUEUE_HOURS_ORDER = "queue_*_hours"
# Fair-share weights per project: {"vision": "2", "nlp": "1"}; a project left out weighs 1 (docs/queue.md).
QUEUE_SHARES = "queue_shares"
MAX_SHARES = 1000
MAX_SHARE_WEIGHT = Decimal(1_000_000)
SHARE_PLACES = 6
QUEUE_KEYS = (*QUEUE_INTEGERS, *QUEUE_HOURS_KEYS, QUEUE_SHARES)
KNOWN_KEYS = (*THRESHOLD_KEYS, KILL_GRACE, DRY_RUN, *QUEUE_KEYS)
# The keys each group problem is in: none of them is wrong on its own.
_GROUPS = {THRESHOLD_ORDER: THRESHOLD_KEYS, QUEUE_HOURS_ORDER: QUEUE_HOURS_KEYS}
_PROJECT = re.compile(NAME_RULE)


class SettingsError(ValueError):
    """A settings document that cannot be applied: ``key`` says which value (``tier_*`` for the order of
    the three thresholds, ``queue_*_hours`` for the default hours above the maximum), ``problem`` why;
    ``version`` is the stored version's number when there is one."""

    def __init__(self, key: str, problem: str, version: int | None = None) -> None:
        where = f"settings version {version}: " if version is not None else ""
        super().__init__(f"{where}{key}: {problem}")
        self.key = key
        self.problem = problem
        self.version = version

    def keys(self) -> tuple[str, ...]:
        """The stored keys the problem is in."""
        return _GROUPS.get(self.key, (self.key,))


@dataclass(frozen=True)
class Settings:
    """What one version asks; ``None`` is a key it does not hold (the controller's own configuration).
    ``ignored`` lists keys nobody here knows (a newer writer's): the API refuses them, the controller logs them."""

    thresholds: Thresholds | None = None
    kill_grace_s: int | None = None
    dry_run: bool | None = None
    # The queue keys held, as Policy fields and their values (shares keyed by entity, "project:NAME").
    queue: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    ignored: tuple[str, ...] = ()

    def queue_policy(self) -> Policy:
        """The queue's policy this version asks for: the keys it holds over ``Policy``'s defaults."""
        return replace(Policy(), **self.queue)

    def document(self) -> dict[str, Any]:
        """The JSON document to store: exactly the keys held, in their canonical form."""
        out: dict[str, Any] = {}
        if self.thresholds is not None:
            t = self.thresholds
            out.update(zip(THRESHOLD_KEYS, map(format_amount, (t.warning, t.limited, t.blocked)), strict=True))
        if self.kill_grace_s is not None:
            out[KILL_GRACE] = self.kill_grace_s
        if self.dry_run is not None:
            out[DRY_RUN] = self.dry_run
        out.update(_queue_document(self.queue))
        return out


def _thresholds(document: Mapping[str, Any], base: Thresholds) -> Thresholds | None:
    """The three thresholds, those the document lacks from ``base``; None when it holds none of them."""
    if not any(k in document for k in THRESHOLD_KEYS):
        return None
    values = [base.warning, base.limited, base.blocked]
    for i, key in enumerate(THRESHOLD_KEYS):
        if key in document:
            try:
                values[i] = parse_amount(document[key])
            except LedgerError as exc:
                raise SettingsError(key, exc.details.get("reason", exc.message)) from None
    warning, limited, blocked = values
    if not warning >= limited >= blocked:
        raise SettingsError(THRESHOLD_ORDER, "thresholds must satisfy tier_warning >= tier_limited >= tier_blocked"
                            f" (here {format_amount(warning)}, {format_amount(limited)}, {format_amount(blocked)})")
    return Thresholds(warning=warning, limited=limited, blocked=blocked)


def _kill_grace(document: Mapping[str, Any]) -> int | None:
    return _integer(document, KILL_GRACE, 0, MAX_KILL_GRACE_S) if KILL_GRACE in document else None


def _dry_run(document: Mapping[str, Any]) -> bool | None:
    if DRY_RUN not in document:
        return None
    value = document[DRY_RUN]
    if not isinstance(value, bool):
        raise SettingsError(DRY_RUN, "must be true or false")
    return value


def _integer(document: Mapping[str, Any], key: str, low: int, high: int) -> int:
    value = document[key]
    # bool is an int subclass, and a float (60.0, 1e3) is how JSON decodes a number written with a fraction
    # or an exponent: neither is an integer here.
    if type(value) is not int or not low <= value <= high:
        raise SettingsError(key, f"must be a JSON integer (no fraction, no exponent) from {low} to {high}")
    return value


def _hours(document: Mapping[str, Any], key: str) -> Decimal:
    value = document[key]
    problem = f"must be hours above 0 and at most {MAX_QUEUE_HOURS}, as decimal text with at most 2 decimals" \
              " (or a JSON integer)"
    if type(value) is int:
        value = str(value)
    try:
        hours = parse_decimal(value, 2, "hours")
    except LedgerError:
        raise SettingsError(key, problem) from None
    if not 0 < hours <= MAX_QUEUE_HOURS:
        raise SettingsError(key, problem)
    return hours.quantize(Decimal("0.01"))


def _shares(document: Mapping[str, Any]) -> Mapping[str, Decimal]:
    value = document[QUEUE_SHARES]
    if not isinstance(value, Mapping) or len(value) > MAX_SHARES:
        raise SettingsError(QUEUE_SHARES, f"must be a JSON object of at most {MAX_SHARES} projects, each with its"
                                          " weight as decimal text")
    shares = {}
    for project, weight in sorted(value.items()):
        if not _PROJECT.fullmatch(project):
            raise SettingsError(QUEUE_SHARES, f"{project[:70]!r} is not a project name")
        try:
            parsed = parse_decimal(weight, SHARE_PLACES, "weight")
        except LedgerError:
            parsed = Decimal(0)
        if not 0 < parsed <= MAX_SHARE_WEIGHT:
            raise SettingsError(QUEUE_SHARES, f"{project}: the weight must be decimal text above 0 and at most"
                                              f" {MAX_SHARE_WEIGHT}, with at most {SHARE_PLACES} decimals")
        shares[f"project:{project}"] = parsed
    return MappingProxyType(shares)


def _queue(document: Mapping[str, Any]) -> Mapping[str, Any]:
    """The queue keys ``document`` holds, as Policy fields; the default hours must be within the maximum,
    each taken from the document or else from Policy's defaults."""
    fields: dict[str, Any] = {}
    for key, (name, low, high) in QUEUE_INTEGERS.items():
        if key in document:
            fields[name] = _integer(document, key, low, high)
    for key, name in zip(QUEUE_HOURS_KEYS, ("default_hours", "max_hours"), strict=True):
        if key in document:
            fields[name] = _hours(document, key)
    policy = replace(Policy(), **fields)
    if policy.default_hours > policy.max_hours:
        raise SettingsError(QUEUE_HOURS_ORDER, f"{QUEUE_DEFAULT_HOURS} must be at most {QUEUE_MAX_HOURS}"
                                               f" (here {policy.default_hours} and {policy.max_hours})")
    if QUEUE_SHARES in document:
        fields["shares"] = _shares(document)
    return MappingProxyType(fields)


def _queue_document(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The stored form of the queue keys ``fields`` holds (as ``_queue`` parsed them)."""
    out: dict[str, Any] = {}
    for key, (name, _, _) in QUEUE_INTEGERS.items():
        if name in fields:
            out[key] = fields[name]
    for key, name in zip(QUEUE_HOURS_KEYS, ("default_hours", "max_hours"), strict=True):
        if name in fields:
            out[key] = str(fields[name])
    if "shares" in fields:
        out[QUEUE_SHARES] = {entity.removeprefix("project:"): str(weight)
                             for entity, weight in fields["shares"].items()}
    return out


def parse(document: Any, base: Thresholds, version: int | None = None) -> Settings:
    """The settings ``document`` holds, all or nothing (half of a threshold change could put users in tiers
    nobody chose): a threshold it lacks is taken from ``base`` when it holds another. SettingsError names
    the first key that cannot be applied (keys in the order of ``KNOWN_KEYS``)."""
    if not isinstance(document, Mapping):
        raise SettingsError("settings", "must be a JSON object", version)
    try:
        return Settings(thresholds=_thresholds(document, base), kill_grace_s=_kill_grace(document),
                        dry_run=_dry_run(document), queue=_queue(document),
                        ignored=tuple(sorted(set(document) - set(KNOWN_KEYS))))
    except SettingsError as exc:
        raise SettingsError(exc.key, exc.problem, version) from None


def in_force(version: Version | None, base: Thresholds) -> Settings:
    """What the controller applies of ``version``, the newest (``control.versions.newest``): all of it when it
    parses (over ``base``, the thresholds of this process's GPULEDGER_TIER_*, the controller's in one
    deployment), else nothing (it falls back on its own configuration as a whole)."""
    if version is None:
        return Settings()
    try:
        return parse(version.settings, base, version.id)
    except SettingsError:
        return Settings()


def merge(stored: Mapping[str, Any], changes: Mapping[str, Any], base: Thresholds) -> tuple[Settings, dict[str, Any]]:
    """A PUT: ``changes`` laid over the ``stored`` version's document, parsed. A stored key the controller
    cannot apply (or does not know), and that ``changes`` does not give anew, is dropped rather than
    inherited: the controller ran on its own configuration for it (it refused that whole version), so
    dropping it keeps what was enforced and stops it from disabling every later version. Returns the
    settings and the dropped keys with their stored values; SettingsError names a key of ``changes``."""
    unknown = sorted(set(changes) - set(KNOWN_KEYS))
    if unknown:
        raise SettingsError(unknown[0], "not a settings key")
    kept = {k: v for k, v in stored.items() if k in KNOWN_KEYS}
    dropped = {k: v for k, v in stored.items() if k not in KNOWN_KEYS}
    while True:
        try:
            parse(kept, base)
            break
        except SettingsError as exc:
            # Each refusal names keys of ``kept`` (it alone was parsed), so this ends.
            dropped.update((k, kept.pop(k)) for k in exc.keys() if k in kept)
    return parse({**kept, **changes}, base), {k: v for k, v in dropped.items() if k not in changes}
