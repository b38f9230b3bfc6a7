"""``audit verify`` finds what a superuser changed behind the ledger's back."""

from __future__ import annotations

import argparse
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from ledger import chain, cli
from ledger.records import ChainHead, UsageTick
from ledger.service import Ledger
from tests.ledger.conftest import cny
from tests.ledger.helpers import T0, cpu, gpu, priced, tamper, truncate_last_block


@pytest.fixture
def busy(ledger: Ledger) -> Ledger:
    ledger.add_user("alice", actor="admin")
    ledger.add_user("bob", actor="admin")
    priced(ledger)
    ledger.recharge("alice", cny("20"), idem_key="r1", actor="ops")
    ledger.post_usage(UsageTick("n1", (gpu("k1"), cpu("k2"), gpu("k3", user="bob", epoch="e-bob"))))
    ledger.post_usage(UsageTick("n1", (gpu("k4", minute=1), cpu("k5", minute=1))))
    adj = ledger.adjust("bob", cny("5"), idem_key="a1", actor="ops", reason="credit")
    ledger.reverse(adj.entry.id, idem_key="rv1", actor="ops", reason="typo")
    return ledger


def test_a_clean_ledger_verifies(busy: Ledger) -> None:
    report = busy.verify()
    assert report.ok, report.problems
    assert report.head is not None and report.head.seq >= 5
    assert busy.verify(anchor=(report.head.seq, report.head.sha256)).ok


@pytest.mark.parametrize(("statements", "check"), [
    # a balanced change of two postings: only the chain can tell
    (["UPDATE ledger.posting SET amount = amount + 1 WHERE entry_id = 2 AND line = 1",
      "UPDATE ledger.posting SET amount = amount - 1 WHERE entry_id = 2 AND line = 2"], "hash-chain"),
    (["UPDATE ledger.posting SET amount = amount + 7 WHERE entry_id = 1 AND line = 1"], "entry-balanced"),
    (["DELETE FROM ledger.posting WHERE entry_id = 3"], "entry-balanced"),
    (["UPDATE ledger.account_balance SET credits = credits + 1"], "balance-cache"),
    (["UPDATE ledger.usage SET quantity = quantity * 2 WHERE idem_key = 'k1'"], "usage-facts"),
    (["UPDATE ledger.usage SET amount = amount + 1 WHERE idem_key = 'k4'"], "re-rate"),
    (["UPDATE ledger.journal_entry SET memo = 'nothing to see' WHERE id = 1"], "hash-chain"),
    (["UPDATE ledger.price_version SET amount = amount * 2 WHERE resource = 'cpu'"], "re-rate"),
    (["DELETE FROM ledger.chain_block WHERE seq = (SELECT max(seq) FROM ledger.chain_block)"], "hash-chain"),
])
def test_tampering_is_detected(busy: Ledger, superuser: Engine, statements: list[str], check: str) -> None:
    tamper(superuser, *statements)
    report = busy.verify()
    assert not report.ok
    assert check in {p.check for p in report.problems}, report.problems


def test_a_rewritten_chain_is_caught_by_the_anchor(busy: Ledger, superuser: Engine) -> None:
    head = busy.verify().head
    assert head is not None
    # rewrite history consistently (change a memo and re-seal every block from scratch)
    tamper(superuser, "UPDATE ledger.journal_entry SET memo = 'rewritten' WHERE id = 1",
           "DELETE FROM ledger.chain_block")
    with superuser.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(1735420007)"))
        conn.execute(text("SELECT ledger.seal_block()"))
    assert busy.verify().ok  # internally consistent again...
    report = busy.verify(anchor=(head.seq, head.sha256))
    assert [p.check for p in report.problems] == ["anchor"]  # ...but not what the auditor saw


def _entry_id(busy: Ledger, kind: str) -> int:
    with busy.engine.connect() as conn:
        return int(conn.execute(text("SELECT min(id) FROM ledger.journal_entry WHERE kind = :k"),
                                {"k": kind}).scalar_one())


def _named(busy: Ledger) -> list[str]:
    return [p.subject.split(" (")[0] for p in busy.verify().problems if p.check == "entry-payload"]


@pytest.mark.parametrize("kind", ["recharge", "adjustment", "reversal", "usage"])
def test_a_changed_entry_is_named_not_only_its_block(busy: Ledger, superuser: Engine, kind: str) -> None:
    entry = _entry_id(busy, kind)
    # both postings moved by the same amount: still balanced, so only the hashes can tell
    tamper(superuser, f"UPDATE ledger.posting SET amount = amount + sign(amount) * 1000 WHERE entry_id = {entry}")  # noqa: S608
    problems = busy.verify().problems
    named = [p for p in problems if p.check == "entry-payload"]
    assert [p.subject.split(" (")[0] for p in named] == [f"entry {entry}"], problems
    assert kind in named[0].subject
    block = next(p for p in problems if p.check == "hash-chain")
    assert f"entry {entry})" in block.subject or "entries" in block.subject


def test_a_grant_s_expiry_is_part_of_its_payload(busy: Ledger, superuser: Engine) -> None:
    grant = busy.grant("alice", cny("3"), expires_at=T0 + timedelta(days=30), idem_key="g1", actor="ops").entry.id
    assert busy.verify().ok
    later = f"UPDATE ledger.grant_account SET expires_at = expires_at + interval '1 year' WHERE entry_id = {grant}"  # noqa: S608
    tamper(superuser, later)
    assert _named(busy) == [f"entry {grant}"]


def test_a_block_of_one_entry_names_it(busy: Ledger, superuser: Engine) -> None:
    entry = _entry_id(busy, "recharge")
    tamper(superuser, f"UPDATE ledger.journal_entry SET memo = 'nothing to see' WHERE id = {entry}")  # noqa: S608
    (problem,) = busy.verify().problems
    assert problem.check == "hash-chain" and f"(entry {entry})" in problem.subject, problem


def test_a_cut_tail_is_caught_only_by_an_anchor_file(busy: Ledger, superuser: Engine, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    head = busy.chain_head()
    assert head is not None
    anchors = tmp_path / "chain-anchors"
    anchors.write_text("# the controller's anchor file\n" + chain.anchor_line(ChainHead(1, _block_hash(busy, 1)), T0)
                       + "\n\n" + chain.anchor_line(head, T0 + timedelta(minutes=1)) + "\n")
    assert busy.verify(anchors=chain.read_anchors(anchors)).ok
    truncate_last_block(superuser)
    assert busy.verify().ok  # what is gone leaves nothing behind to recompute...
    report = busy.verify(anchors=chain.read_anchors(anchors))
    (problem,) = report.problems  # ...but the anchor file saw it
    assert (problem.check, problem.subject) == ("anchor", f"block {head.seq}")
    assert "truncated" in problem.detail and f"{anchors}:4" in problem.detail

    monkeypatch.setenv("GPULEDGER_DATABASE_URL", busy.config.database_url.reveal())
    parser = argparse.ArgumentParser(prog="gpuledger")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["audit", "verify", "--anchor-file", str(anchors)])
    assert args.func(args) == 1
    assert f"anchor: block {head.seq}: gone" in capsys.readouterr().out
    anchors.write_text(anchors.read_text() + "not an anchor\n")
    assert args.func(args) == 2
    assert f"{anchors}:5 is not an anchor line" in capsys.readouterr().err


def _block_hash(busy: Ledger, seq: int) -> str:
    with busy.engine.connect() as conn:
        return bytes(conn.execute(text("SELECT block_hash FROM ledger.chain_block WHERE seq = :s"),
                                  {"s": seq}).scalar_one()).hex()
