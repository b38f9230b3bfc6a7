from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.rating import cost_micro, rate, round_micro, select_price
from ledger.records import PriceVersion

T = datetime(2026, 1, 1, tzinfo=UTC)


def version(id_: int, pattern: str = "", match: str = "exact", priority: int = 0, amount: str = "0.50",
            per: str = "60", resource: str = "gpu", valid_from: datetime = T) -> PriceVersion:
    unit = {"gpu": "gpu-second", "cpu": "core-second", "memory": "GiB-second"}[resource]
    return PriceVersion(id_, resource, pattern, match, priority, Decimal(amount), Decimal(per), unit, valid_from,
                        "test", "")


@pytest.mark.parametrize(("value", "micro"), [
    (Fraction(0), 0), (Fraction(1, 2_000_000), 1), (Fraction(499_999, 10**12), 0), (Fraction(3, 2 * 10**6), 2),
    (Fraction(5, 2 * 10**6), 3), (Fraction(1, 3), 333_333), (Fraction(2, 3), 666_667),
])
def test_round_micro_is_half_up(value: Fraction, micro: int) -> None:
    assert round_micro(value) == micro


def test_a_charge_below_half_a_micro_unit_is_carried_not_lost() -> None:
    # 0.02 per 60 core-seconds: one core-second costs 0.000333..., 0.001 s costs a third of a micro-unit
    price = version(1, resource="cpu", amount="0.02")
    cumulative, charges = Decimal(0), []
    for _ in range(3000):
        rated = rate(cumulative, Decimal("0.001"), price)
        cumulative = rated.cumulative_quantity
        charges.append(rated.amount)
    assert sum(charges) == cost_micro(Decimal(3), price) == 1000
    assert max(charges) == 1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.decimals(min_value=0, max_value=10**6, places=3), min_size=1, max_size=40),
       st.decimals(min_value=0, max_value=1000, places=6), st.integers(min_value=1, max_value=86400))
def test_telescoping_never_drifts(quantities: list[Decimal], amount: Decimal, per: int) -> None:
    price = version(1, amount=str(amount), per=str(per))
    cumulative, total = Decimal(0), 0
    for q in quantities:
        rated = rate(cumulative, q, price)
        assert rated.amount >= 0
        cumulative, total = rated.cumulative_quantity, total + rated.amount
    assert total == round_micro(Fraction(sum(quantities)) * Fraction(amount) / per)


@settings(max_examples=200, deadline=None)
@given(st.decimals(min_value=0, max_value=10**6, places=9), st.decimals(min_value=0, max_value=10**3, places=6),
       st.decimals(min_value=Decimal("0.001"), max_value=10**6, places=3))
def test_cost_is_the_half_up_rounding_of_the_exact_product(quantity: Decimal, amount: Decimal, per: Decimal) -> None:
    price = version(1, amount=str(amount), per=str(per))
    assert cost_micro(quantity, price) == round_micro(Fraction(quantity) * Fraction(amount) / Fraction(per))


def test_a_negative_cost_is_refused() -> None:
    with pytest.raises(ValueError, match="never negative"):
        cost_micro(Decimal(-1), version(1))


def test_price_selection_priority_exact_and_versions() -> None:
    a100 = "NVIDIA A100-SXM4-80GB"
    versions = [
        version(1, "NVIDIA A100*", "glob", priority=0, amount="0.40"),
        version(2, a100, "exact", priority=0, amount="0.50"),
        version(3, "NVIDIA *", "glob", priority=5, amount="0.10", valid_from=T + timedelta(days=10)),
        version(4, a100, "exact", priority=0, amount="0.55", valid_from=T + timedelta(days=5)),
    ]
    assert select_price(versions, "gpu", a100, T).id == 2  # exact wins the tie with glob
    assert select_price(versions, "gpu", a100, T + timedelta(days=6)).id == 4  # newer version of the same key
    assert select_price(versions, "gpu", a100, T + timedelta(days=11)).id == 3  # higher priority
    assert select_price(versions, "gpu", "NVIDIA A100-PCIE-40GB", T).id == 1
    assert select_price(versions, "gpu", "Tesla V100", T) is None
    assert select_price(versions, "gpu", a100, T - timedelta(seconds=1)) is None


def test_glob_is_case_sensitive_and_cpu_needs_no_model() -> None:
    assert select_price([version(1, "nvidia*", "glob")], "gpu", "NVIDIA A100", T) is None
    assert select_price([version(7, resource="cpu")], "cpu", "", T).id == 7
