from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.errors import MalformedAmount
from ledger.money import MAX_MICRO, Side, available, format_amount, parse_amount, signed


@pytest.mark.parametrize(("text", "micro"), [
    ("12.345678", 12_345_678), ("0.000001", 1), ("100", 100_000_000), ("-3.5", -3_500_000), (".5", 500_000),
    ("1_000", 1_000_000_000), ("12.3400000", 12_340_000),
])
def test_parse_amount(text: str, micro: int) -> None:
    assert parse_amount(text) == micro


@pytest.mark.parametrize("text", ["", "abc", "1e3", "NaN", "inf", "0.0000001", "1.2.3", "1,5", "9" * 20])
def test_malformed_amounts_are_refused_with_the_text(text: str) -> None:
    with pytest.raises(MalformedAmount) as caught:
        parse_amount(text)
    assert caught.value.details["text"] == text


def test_floats_are_refused() -> None:
    with pytest.raises(MalformedAmount):
        parse_amount(0.1)  # type: ignore[arg-type]


@given(st.integers(min_value=-MAX_MICRO, max_value=MAX_MICRO))
def test_format_then_parse_is_exact(micro: int) -> None:
    text = format_amount(micro)
    assert parse_amount(text) == micro
    assert Decimal(text) * 10**6 == micro
    assert len(text.split(".")[1]) == 6


def test_one_sign_convention() -> None:
    assert signed(Side.DEBIT, 5) == 5
    assert signed(Side.CREDIT, 5) == -5
    assert available(-5) == 5
    with pytest.raises(ValueError):
        signed(Side.DEBIT, 0)
