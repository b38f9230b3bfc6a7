from __future__ import annotations

import pytest

from ledger.money import MICRO
from ledger.tiers import Thresholds, Tier, tier_for

T = Thresholds()


@pytest.mark.parametrize(("available", "tier"), [
    (100 * MICRO, Tier.NORMAL), (100 * MICRO - 1, Tier.WARNING), (10 * MICRO, Tier.WARNING),
    (10 * MICRO - 1, Tier.LIMITED), (0, Tier.LIMITED), (-1, Tier.BLOCKED),
])
def test_seed_thresholds(available: int, tier: Tier) -> None:
    assert tier_for(available, T) is tier


def test_credit_limit_and_exemption() -> None:
    assert tier_for(-5 * MICRO, T, credit_limit=5 * MICRO) is Tier.LIMITED
    assert tier_for(-5 * MICRO - 1, T, credit_limit=5 * MICRO) is Tier.BLOCKED
    assert tier_for(-10**12, T, exempt=True) is Tier.NORMAL
