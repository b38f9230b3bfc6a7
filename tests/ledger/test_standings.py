"""The ledger's rules for the decision path, each with one owner: who a Linux user bills to
(``directory.resolve``, the same SQL the tick path charges by), standings with both tiers in one query, and
what a wallet holds."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from ledger import directory
from ledger.errors import UnknownUser
from ledger.records import UsageTick
from ledger.service import Ledger
from ledger.tiers import Thresholds, Tier
from tests.ledger.conftest import cny
from tests.ledger.helpers import gpu, priced


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


@pytest.fixture
def lab(ledger: Ledger) -> Ledger:
    """alice and bob in project lab (wallet 50), carol alone (5, credit limit 10), dave exempt and in debt,
    erin with a grant of 200 and nothing else."""
    ledger.add_project("lab", actor="admin")
    for name in ("alice", "bob", "carol", "dave", "erin"):
        ledger.add_user(name, actor="admin")
    for member in ("alice", "bob"):
        ledger.assign_project(member, "lab", actor="admin")
    ledger.recharge("project:lab", cny("50"), idem_key="r-lab", actor="admin")
    ledger.recharge("carol", cny("5"), idem_key="r-carol", actor="admin")
    ledger.set_credit_limit("carol", cny("10"), actor="admin")
    ledger.update_user("dave", exempt=True, actor="admin")
    ledger.adjust("dave", -cny("30"), idem_key="a-dave", actor="admin", reason="debt")
    ledger.grant("erin", cny("200"), expires_at=None, idem_key="g-erin", actor="admin")
    return ledger


def test_standings_are_one_query_whatever_the_number_of_users(lab: Ledger) -> None:
    with statements(lab.engine) as one:
        lab.standings(["alice"])
    with statements(lab.engine) as all_:
        everyone = lab.standings()
    assert len(one) == len(all_) == 1
    assert sorted(everyone) == ["alice", "bob", "carol", "dave", "erin"]


def test_standings_carry_the_wallet_charged_and_both_tiers(lab: Ledger) -> None:
    got = {name: (b.wallet, b.available, b.tier, b.wallet_tier, b.exempt, b.credit_limit)
           for name, b in lab.standings().items()}
    lab_wallet = "liabilities:wallet:project:lab"
    assert got == {
        "alice": (lab_wallet, cny("50"), Tier.WARNING, Tier.WARNING, False, None),
        "bob": (lab_wallet, cny("50"), Tier.WARNING, Tier.WARNING, False, None),
        "carol": ("liabilities:wallet:user:carol", cny("5"), Tier.LIMITED, Tier.LIMITED, False, cny("10")),
        "dave": ("liabilities:wallet:user:dave", -cny("30"), Tier.NORMAL, Tier.BLOCKED, True, None),
        "erin": ("liabilities:wallet:user:erin", cny("200"), Tier.NORMAL, Tier.NORMAL, False, None),  # the grant
    }
    # under other thresholds (a settings version's): the tiers move, the money does not
    strict = {n: (b.tier, b.wallet_tier) for n, b in lab.standings(thresholds=Thresholds(
        warning=cny("300"), limited=cny("100"), blocked=cny("10"))).items()}
    assert strict == {"alice": (Tier.LIMITED, Tier.LIMITED), "bob": (Tier.LIMITED, Tier.LIMITED),
                      "carol": (Tier.LIMITED, Tier.LIMITED), "dave": (Tier.NORMAL, Tier.BLOCKED),
                      "erin": (Tier.WARNING, Tier.WARNING)}
    # one user's standing and a wallet's balance say the same
    for name in got:
        assert lab.standing(name) == lab.standings([name])[name]
    assert lab.balance("dave") == lab.standing("dave")
    with pytest.raises(UnknownUser):
        lab.standing("nobody")


def test_a_wallet_holds_its_own_grants_only(ledger: Ledger) -> None:
    """Grants belong to a wallet by ledger.grant_account, not by code pattern: ``_`` in a user's name is a LIKE
    wildcard, and a_b's wallet would otherwise count axb's grant."""
    for name in ("a_b", "axb"):
        ledger.add_user(name, actor="admin")
    ledger.grant("axb", cny("7"), expires_at=None, idem_key="g", actor="admin")
    assert ledger.balance("a_b").available == ledger.standing("a_b").available == 0
    assert ledger.balance("axb").available == ledger.standing("axb").available == cny("7")


def test_resolve_is_the_rule_the_tick_path_charges_by(ledger: Ledger) -> None:
    """The node's own mapping, else the ``*`` mapping, else the same name; nobody: absent. The tick path's usage
    rows name the same billing users."""
    priced(ledger)
    for name in ("alice", "bob", "carol"):
        ledger.add_user(name, actor="admin")
    ledger.map_linux_user("*", "al", "alice", actor="admin")
    ledger.map_linux_user("n2", "al", "bob", actor="admin")
    ledger.map_linux_user("n2", "carol", "alice", actor="admin")
    pairs = [("n1", "al"), ("n2", "al"), ("n1", "carol"), ("n2", "carol"), ("n1", "mallory")]
    with ledger.engine.connect() as conn:
        billing = directory.resolve(conn, pairs + pairs)
        assert directory.resolve(conn, []) == {}
    assert billing == {("n1", "al"): "alice", ("n2", "al"): "bob", ("n1", "carol"): "carol",
                       ("n2", "carol"): "alice"}
    charged = {}
    for n, (node, linux_user) in enumerate(pairs):
        result = ledger.post_usage(UsageTick(node, (gpu(f"k{n}", user=linux_user, epoch=f"{node}/{linux_user}"),)))
        for outcome in result.posted:
            charged[(node, linux_user)] = outcome.user
    assert charged == billing
