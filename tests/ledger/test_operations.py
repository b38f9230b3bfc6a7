"""Admin money operations through the service: idempotency, errors with data, audit rows, grants."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from ledger.errors import (
    AlreadyReversed,
    DuplicateName,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidName,
    LedgerError,
    MalformedAmount,
    NonPositiveAmount,
    NotRefundable,
    RefundExceedsCharge,
    UnknownEntry,
    UnknownProject,
    UnknownUser,
    UnknownWallet,
)
from ledger.records import UsageTick
from ledger.service import Ledger
from ledger.tiers import Tier
from tests.ledger.conftest import cny
from tests.ledger.helpers import T0, gpu, priced


@pytest.fixture
def alice(ledger: Ledger) -> Ledger:
    ledger.add_user("alice", display_name="Alice", actor="admin")
    return ledger


def audit_rows(superuser: Engine) -> list[tuple[str, str, str, object, object]]:
    with superuser.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT actor, action, target, before, after FROM ledger.admin_audit ORDER BY id"))]


def test_recharge_is_idempotent_and_audited(alice: Ledger, superuser: Engine) -> None:
    first = alice.recharge("alice", cny("50"), idem_key="order-1", actor="ops", memo="cash", request_id="req-9")
    again = alice.recharge("user:alice", cny("50"), idem_key="order-1", actor="ops", memo="cash, retried")
    assert first.created and not again.created
    assert again.entry.id == first.entry.id
    assert alice.balance("alice").available == cny("50")
    rows = audit_rows(superuser)
    assert rows[-1][:3] == ("ops", "recharge", "liabilities:wallet:user:alice")
    assert rows[-1][3] == {"available": 0} and rows[-1][4] == {"available": cny("50"), "entry_id": first.entry.id}
    assert sum(1 for r in rows if r[1] == "recharge") == 1  # the replay wrote nothing


def test_same_key_other_content_is_refused_and_counted(alice: Ledger) -> None:
    alice.recharge("alice", cny("50"), idem_key="order-1", actor="ops")
    with pytest.raises(IdempotencyConflict) as caught:
        alice.recharge("alice", cny("50.000001"), idem_key="order-1", actor="ops")
    assert caught.value.details["key"] == "order-1"
    assert alice.idempotency_conflicts() == 1
    assert alice.balance("alice").available == cny("50")


@pytest.mark.parametrize(("call", "error"), [
    (lambda lg: lg.recharge("bob", cny("1"), idem_key="k", actor="a"), UnknownUser),
    (lambda lg: lg.recharge("alice", -cny("1"), idem_key="k", actor="a"), NonPositiveAmount),
    (lambda lg: lg.recharge("alice", 0, idem_key="k", actor="a"), NonPositiveAmount),
    (lambda lg: lg.recharge("team:x", cny("1"), idem_key="k", actor="a"), UnknownWallet),
    (lambda lg: lg.add_user("alice", actor="a"), DuplicateName),
    (lambda lg: lg.add_user("Li Wei", actor="a"), InvalidName),
    (lambda lg: lg.adjust("alice", 0, idem_key="k", actor="a", reason="r"), MalformedAmount),
    (lambda lg: lg.reverse(999, idem_key="k", actor="a", reason="r"), UnknownEntry),
])
def test_bad_input_gets_a_typed_error_and_changes_nothing(alice: Ledger, call: object, error: type) -> None:
    before = alice.trial_balance()
    with pytest.raises(error):
        call(alice)  # type: ignore[operator]
    assert alice.trial_balance() == before


def test_grant_is_spent_first_and_what_is_left_expires(alice: Ledger, superuser: Engine) -> None:
    priced(alice)
    alice.recharge("alice", cny("10"), idem_key="r", actor="ops")
    g = alice.grant("alice", cny("0.75"), expires_at=T0 + timedelta(days=30), idem_key="g", actor="pi")
    retried = alice.grant("alice", cny("0.75"), expires_at=T0 + timedelta(days=30), idem_key="g", actor="pi")
    assert retried.created is False and retried.entry.id == g.entry.id
    assert alice.balance("alice").available == cny("10.75")
    result = alice.post_usage(UsageTick("n1", (gpu("u1", minute=0), gpu("u2", minute=1))))  # 2 x 0.50
    lines = [alice.entry(o.entry_id).postings for o in result.posted]  # type: ignore[arg-type]
    assert [(p.account, p.amount) for p in lines[0]][:1] == [("liabilities:wallet:user:alice:grant:1", cny("0.5"))]
    assert {(p.account, p.amount) for p in lines[1]} >= {("liabilities:wallet:user:alice:grant:1", cny("0.25")),
                                                         ("liabilities:wallet:user:alice", cny("0.25"))}
    assert alice.balance("alice").available == cny("9.75")
    assert alice.expire_grants(T0 + timedelta(days=31), actor="cron") == []  # nothing left to give back
    g2 = alice.grant("alice", cny("2"), expires_at=T0 + timedelta(days=1), idem_key="g2", actor="pi")
    expired = alice.expire_grants(T0 + timedelta(days=2), actor="cron")
    assert [(e.entry.kind, e.entry.ref_entry_id) for e in expired] == [("grant_expiry", g2.entry.id)]
    assert alice.expire_grants(T0 + timedelta(days=3), actor="cron") == []
    assert alice.balance("alice").available == cny("9.75")
    assert g.entry.kind == "grant"


def test_adjust_refund_reverse(alice: Ledger) -> None:
    priced(alice)
    charge = alice.post_usage(UsageTick("n1", (gpu("u1"),))).posted[0]
    assert charge.amount == cny("0.5")
    alice.adjust("alice", cny("2"), idem_key="adj", actor="ops", reason="goodwill")
    alice.adjust("alice", -cny("1"), idem_key="adj2", actor="ops", reason="manual charge")
    alice.adjust("alice", cny("0.5"), counter="writeoff", idem_key="wo", actor="ops", reason="debt written off")
    assert alice.balance("alice").available == cny("1")
    refund = alice.refund(charge.entry_id, cny("0.2"), idem_key="ref", actor="ops", reason="node fault")
    assert refund.entry.ref_entry_id == charge.entry_id
    with pytest.raises(RefundExceedsCharge) as caught:
        alice.refund(charge.entry_id, cny("0.300001"), idem_key="ref2", actor="ops", reason="again")
    assert caught.value.details["refundable"] == cny("0.3")
    with pytest.raises(NotRefundable):
        alice.refund(refund.entry.id, 1, idem_key="ref3", actor="ops", reason="x")
    with pytest.raises(LedgerError, match="has refunds"):
        alice.reverse(charge.entry_id, idem_key="rev", actor="ops", reason="x")
    adj = alice.adjust("alice", cny("3"), idem_key="adj3", actor="ops", reason="oops")
    reversal = alice.reverse(adj.entry.id, idem_key="rev-adj3", actor="ops", reason="typo")
    assert [p.amount for p in reversal.entry.postings] == [-p.amount for p in adj.entry.postings]
    with pytest.raises(AlreadyReversed) as already:
        alice.reverse(adj.entry.id, idem_key="rev-adj3-again", actor="ops", reason="typo")
    assert already.value.details["by"] == reversal.entry.id
    assert alice.balance("alice").available == cny("1.2")
    assert alice.verify().ok


def test_a_spent_grant_cannot_be_reversed(alice: Ledger) -> None:
    priced(alice)
    g = alice.grant("alice", cny("1"), expires_at=None, idem_key="g", actor="pi")
    alice.post_usage(UsageTick("n1", (gpu("u1"),)))
    with pytest.raises(InsufficientFunds) as caught:
        alice.reverse(g.entry.id, idem_key="rev-g", actor="pi", reason="mistake")
    assert caught.value.details == {"account": "liabilities:wallet:user:alice:grant:1", "available": cny("0.5"),
                                    "asked": cny("1")}


def test_user_settings_are_audited_with_before_and_after(alice: Ledger, superuser: Engine) -> None:
    alice.add_project("lab1", actor="admin")
    alice.set_exempt("alice", True, actor="admin", request_id="r1")
    alice.set_credit_limit("alice", cny("20"), actor="admin")
    user = alice.assign_project("alice", "lab1", actor="admin")
    assert (user.exempt, user.credit_limit, user.project) == (True, cny("20"), "lab1")
    mapping = alice.map_linux_user("*", "awang", "alice", actor="admin")
    assert (mapping.node, mapping.linux_user, mapping.user) == ("*", "awang", "alice")
    actions = [(r[1], json.dumps(r[3], sort_keys=True), json.dumps(r[4], sort_keys=True))
               for r in audit_rows(superuser)]
    assert ("user.exempt", '{"exempt": false, "project": null}', '{"exempt": true, "project": null}') in actions
    assert ("user.project", '{"project": null}', '{"project": "lab1"}') in actions
    assert [a[0] for a in actions] == ["user.add", "project.add", "user.exempt", "user.credit_limit", "user.project",
                                       "user.map"]
    standing = alice.standings()["alice"]
    assert (standing.wallet, standing.tier) == ("liabilities:wallet:project:lab1", Tier.NORMAL)


def test_update_user_changes_fields_together_in_one_audit_row(alice: Ledger, superuser: Engine) -> None:
    alice.add_project("lab1", actor="admin")
    user = alice.update_user("alice", actor="admin", exempt=True, credit_limit=cny("5"), project="lab1")
    assert (user.exempt, user.credit_limit, user.project) == (True, cny("5"), "lab1")
    assert alice.update_user("alice", actor="admin") == user   # nothing given: nothing changes, nothing audited
    cleared = alice.update_user("alice", actor="admin", credit_limit=None, project=None)
    assert (cleared.exempt, cleared.credit_limit, cleared.project) == (True, None, None)
    with pytest.raises(NonPositiveAmount):
        alice.update_user("alice", actor="admin", exempt=False, credit_limit=-1)
    with pytest.raises(UnknownProject):
        alice.update_user("alice", actor="admin", exempt=False, project="nope")
    assert alice.get_user("alice").exempt is True
    updates = [(r[3], r[4]) for r in audit_rows(superuser) if r[1] == "user.update"]
    assert updates == [
        ({"exempt": False, "credit_limit": None, "project": None}, {"exempt": True, "credit_limit": cny("5"),
                                                                     "project": "lab1"}),
        ({"credit_limit": cny("5"), "project": "lab1"}, {"credit_limit": None, "project": None}),
    ]
