"""Random sequences of operations keep every invariant: entries balance, the trial balance is zero, balances
equal the sum of postings and a simple model's, replays change nothing, and ``audit verify`` stays clean."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from ledger.config import LedgerConfig
from ledger.db import create_app_engine
from ledger.environ import Secret
from ledger.errors import AlreadyReversed, InsufficientFunds, LedgerError, RefundExceedsCharge
from ledger.records import UsageTick
from ledger.service import Ledger
from tests.ledger.helpers import T0, cpu, gpu, priced

USERS = ("alice", "bob", "carol")
amounts = st.integers(min_value=1, max_value=50_000_000)


def test_random_operations_keep_the_invariants(database_factory: Callable[[], str]) -> None:
    class LedgerMachine(RuleBasedStateMachine):
        @initialize()
        def setup(self) -> None:
            url = database_factory()
            self.engine = create_app_engine(url)
            self.ledger = Ledger(self.engine, LedgerConfig(database_url=Secret(url)))
            for user in USERS:
                self.ledger.add_user(user, actor="admin")
            priced(self.ledger)
            self.model = dict.fromkeys(USERS, 0)   # what each wallet should hold
            self.posted: list[tuple[str, tuple[object, ...], object]] = []  # (op, args, result) to replay
            self.entries: list[int] = []
            self.charges: list[tuple[int, str, int]] = []  # (entry id, user, refundable)
            self.minute = 0
            self.n = 0

        def key(self) -> str:
            self.n += 1
            return f"op-{self.n}"

        @rule(user=st.sampled_from(USERS), micro=amounts)
        def recharge(self, user: str, micro: int) -> None:
            key = self.key()
            result = self.ledger.recharge(user, micro, idem_key=key, actor="t")
            self.model[user] += micro
            self.entries.append(result.entry.id)
            self.posted.append(("recharge", (user, micro, key), result.entry.id))

        @rule(user=st.sampled_from(USERS), micro=amounts, expiring=st.booleans())
        def grant(self, user: str, micro: int, expiring: bool) -> None:
            expires = T0 + timedelta(days=1) if expiring else None
            result = self.ledger.grant(user, micro, expires_at=expires, idem_key=self.key(), actor="t")
            self.model[user] += micro
            self.entries.append(result.entry.id)

        @rule(users=st.lists(st.sampled_from(USERS), min_size=1, max_size=3, unique=True),
              seconds=st.integers(min_value=0, max_value=600))
        def usage(self, users: list[str], seconds: int) -> None:
            self.minute += 1
            records = tuple(r for u in users for r in (
                gpu(f"t{self.minute}/{u}/g", user=u, minute=self.minute, seconds=str(seconds)),
                cpu(f"t{self.minute}/{u}/c", user=u, minute=self.minute, seconds=f"{seconds}.5")))
            tick = UsageTick("n1", records)
            result = self.ledger.post_usage(tick)
            assert not result.rejected
            for o in result.posted:
                self.model[o.user] -= o.amount
                if o.entry_id is not None:
                    self.entries.append(o.entry_id)
                    self.charges.append((o.entry_id, o.user, o.amount))
            again = self.ledger.post_usage(tick)
            assert [(o.usage_id, o.entry_id, o.created) for o in again.posted] == [
                (o.usage_id, o.entry_id, False) for o in result.posted]

        @rule(user=st.sampled_from(USERS), micro=st.integers(min_value=-10_000_000, max_value=10_000_000).filter(bool))
        def adjust(self, user: str, micro: int) -> None:
            result = self.ledger.adjust(user, micro, idem_key=self.key(), actor="t", reason="r")
            self.model[user] += micro
            self.entries.append(result.entry.id)

        @precondition(lambda self: self.charges)
        @rule(data=st.data())
        def refund(self, data: st.DataObject) -> None:
            i = data.draw(st.integers(min_value=0, max_value=len(self.charges) - 1))
            entry_id, user, refundable = self.charges[i]
            micro = data.draw(st.integers(min_value=1, max_value=refundable + 1))
            try:
                result = self.ledger.refund(entry_id, micro, idem_key=self.key(), actor="t", reason="r")
            except RefundExceedsCharge:
                assert micro > refundable
                return
            assert micro <= refundable
            self.charges[i] = (entry_id, user, refundable - micro)
            self.model[user] += micro
            self.entries.append(result.entry.id)

        @precondition(lambda self: self.entries)
        @rule(data=st.data())
        def reverse(self, data: st.DataObject) -> None:
            entry_id = data.draw(st.sampled_from(self.entries))
            entry = self.ledger.entry(entry_id)
            try:
                result = self.ledger.reverse(entry_id, idem_key=self.key(), actor="t", reason="r")
            except (AlreadyReversed, InsufficientFunds):
                return
            except LedgerError as exc:  # refunds present: a documented refusal, nothing posted
                assert "has refunds" in exc.message
                return
            for p in result.entry.postings:
                for user in USERS:
                    if p.account.startswith(f"liabilities:wallet:user:{user}"):
                        self.model[user] -= p.amount
            self.charges = [c for c in self.charges if c[0] != entry.id]

        @precondition(lambda self: self.posted)
        @rule(data=st.data())
        def replay(self, data: st.DataObject) -> None:
            _, (user, micro, key), entry_id = data.draw(st.sampled_from(self.posted))
            result = self.ledger.recharge(user, micro, idem_key=key, actor="t")  # type: ignore[arg-type]
            assert not result.created and result.entry.id == entry_id

        @rule()
        def expire(self) -> None:
            for r in self.ledger.expire_grants(T0 + timedelta(days=2), actor="t"):
                user = r.entry.postings[0].account.split(":")[3]
                self.model[user] -= r.entry.postings[0].amount  # the grant account is debited

        @invariant()
        def books_balance(self) -> None:
            if not hasattr(self, "ledger"):
                return
            tb = self.ledger.trial_balance()
            assert tb.total == 0
            for user in USERS:
                assert self.ledger.balance(user).available == self.model[user], user

        def teardown(self) -> None:
            if hasattr(self, "ledger"):
                report = self.ledger.verify()
                assert report.ok, report.problems
                self.engine.dispose()

    LedgerMachine.TestCase.settings = settings(max_examples=12, stateful_step_count=12, deadline=None,
                                               suppress_health_check=[HealthCheck.too_slow])
    LedgerMachine.TestCase().runTest()
