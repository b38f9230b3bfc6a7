"""A settings version: which keys it may hold, what each value must be, and the one parse-and-merge rule the
API stores by and the controller applies by (docs/api.md, "Settings").

One parser for both sides is the point: a value the API stored but the controller refused made the
controller drop the whole version (and, since a PUT merges, every later one) while the API showed it in
force. So ``parse`` is strict where JSON is loose: an integer is a JSON integer (``json`` gives a float for
``60.0`` and ``1e3``), a boolean is ``true``/``false``, an amount is decimal text with at most six decimals.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ledger.errors import LedgerError
from ledger.money import format_amount, parse_amount
from ledger.tiers import Thresholds

THRESHOLD_KEYS = ("tier_warning", "tier_limited", "tier_blocked")
# The key a threshold-order problem is reported under: no one of the three is wrong on its own.
THRESHOLD_ORDER = "tier_*"
KILL_GRACE = "kill_grace_seconds"
DRY_RUN = "dry_run"
KNOWN_KEYS = (*THRESHOLD_KEYS, KILL_GRACE, DRY_RUN)
MAX_KILL_GRACE_S = 30 * 86400


class SettingsError(ValueError):
    """A settings document that cannot be applied: ``key`` says which value (``tier_*`` for the order of
    the three thresholds), ``problem`` why; ``version`` is the stored version's number when there is one."""

    def __init__(self, key: str, problem: str, version: int | None = None) -> None:
        where = f"settings version {version}: " if version is not None else ""
        super().__init__(f"{where}{key}: {problem}")
        self.key = key
        self.problem = problem
        self.version = version

    def keys(self) -> tuple[str, ...]:
        """The stored keys the problem is in."""
        return THRESHOLD_KEYS if self.key == THRESHOLD_ORDER else (self.key,)


@dataclass(frozen=True)
class Settings:
    """What one version asks; ``None`` is a key it does not hold (the controller's own configuration).
    ``ignored`` lists keys nobody here knows (a newer writer's): the API refuses them, the controller logs them."""

    thresholds: Thresholds | None = None
    kill_grace_s: int | None = None
    dry_run: bool | None = None
    ignored: tuple[str, ...] = ()

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
    if KILL_GRACE not in document:
        return None
    value = document[KILL_GRACE]
    # bool is an int subclass, and a float (60.0, 1e3) is how JSON decodes a number written with a fraction
    # or an exponent: neither is an integer here.
    if type(value) is not int or not 0 <= value <= MAX_KILL_GRACE_S:
        raise SettingsError(KILL_GRACE, f"must be a JSON integer (no fraction, no exponent) from 0 to"
                                        f" {MAX_KILL_GRACE_S}")
    return value


def _dry_run(document: Mapping[str, Any]) -> bool | None:
    if DRY_RUN not in document:
        return None
    value = document[DRY_RUN]
    if not isinstance(value, bool):
        raise SettingsError(DRY_RUN, "must be true or false")
    return value


def parse(document: Any, base: Thresholds, version: int | None = None) -> Settings:
    """The settings ``document`` holds, all or nothing (half of a threshold change could put users in tiers
    nobody chose): a threshold it lacks is taken from ``base`` when it holds another. SettingsError names
    the first key that cannot be applied (keys in the order of ``KNOWN_KEYS``)."""
    if not isinstance(document, Mapping):
        raise SettingsError("settings", "must be a JSON object", version)
    try:
        return Settings(thresholds=_thresholds(document, base), kill_grace_s=_kill_grace(document),
                        dry_run=_dry_run(document), ignored=tuple(sorted(set(document) - set(KNOWN_KEYS))))
    except SettingsError as exc:
        raise SettingsError(exc.key, exc.problem, version) from None


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
