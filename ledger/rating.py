"""Rating: which price applies to a usage record, and what it costs. Pure functions, exact arithmetic.

The rounding rule (docs/ledger.md, "telescoping"): within one counter epoch and price version, the charge
of the t-th record is ``round_micro(Q_t * price) - round_micro(Q_{t-1} * price)`` where ``Q`` is the exact
cumulative quantity. The charges of an epoch therefore always add up to the rounded exact cost of its
total usage, and a charge below half a micro-unit is carried into the next record instead of vanishing.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction

from ledger.money import MAX_MICRO, MICRO
from ledger.records import BY_MODEL, PriceVersion


def round_micro(value: Fraction) -> int:
    """Round an exact non-negative currency amount to micro-units, half up (0.5 micro-unit -> 1)."""
    if value < 0:
        raise ValueError(f"costs are never negative, got {value}")
    scaled = value * MICRO
    return int((scaled.numerator * 2 + scaled.denominator) // (scaled.denominator * 2))


def cost_micro(cumulative_quantity: Decimal, price: PriceVersion) -> int:
    """The rounded exact cost of ``cumulative_quantity`` units at ``price`` (``amount`` per ``per`` units)."""
    # The same exact value as Fraction(q) * Fraction(amount) / Fraction(per), in plain integers: the tick
    # path rates every record twice, and Fraction's normalising gcd per operation was 10% of a node's tick.
    q_num, q_den = cumulative_quantity.as_integer_ratio()
    a_num, a_den = price.amount.as_integer_ratio()
    p_num, p_den = price.per.as_integer_ratio()
    num, den = q_num * a_num * p_den, q_den * a_den * p_num
    if den < 0:
        num, den = -num, -den
    if num < 0:
        raise ValueError(f"costs are never negative, got {Fraction(num, den)}")
    micro: int = (num * MICRO * 2 + den) // (den * 2)  # half up, as round_micro
    if micro > MAX_MICRO:
        raise OverflowError(f"cost of {cumulative_quantity} {price.unit} exceeds the ledger's range")
    return micro


@dataclass(frozen=True)
class Rated:
    cumulative_quantity: Decimal
    amount: int


def rate(previous_cumulative: Decimal, quantity: Decimal, price: PriceVersion) -> Rated:
    """The charge for ``quantity`` more units after ``previous_cumulative`` in the same epoch and price."""
    cumulative = previous_cumulative + quantity
    return Rated(cumulative, cost_micro(cumulative, price) - cost_micro(previous_cumulative, price))


def _matches(version: PriceVersion, model: str) -> bool:
    if version.match == "exact":
        return version.model_pattern == model
    return fnmatch.fnmatchcase(model, version.model_pattern)


def select_price(versions: Iterable[PriceVersion], resource: str, model: str, at: datetime) -> PriceVersion | None:
    """The version that prices ``resource``/``model`` at ``at``, or None.

    Only the newest version (``valid_from <= at``) of each (resource, pattern, match) key counts; among
    those that match the model, the highest priority wins, exact before glob on a tie, then the newest.
    """
    current: dict[tuple[str, str, str], PriceVersion] = {}
    for v in versions:
        if v.resource != resource or v.valid_from > at:
            continue
        key = (v.resource, v.model_pattern, v.match)
        held = current.get(key)
        if held is None or (v.valid_from, v.id) > (held.valid_from, held.id):
            current[key] = v
    candidates = [v for v in current.values() if resource not in BY_MODEL or _matches(v, model)]
    if not candidates:
        return None
    return max(candidates, key=lambda v: (v.priority, v.match == "exact", v.valid_from, v.id))
