"""Beancount account names (ledger.exports.names): legal for Beancount, readable where the code allows,
and reversible, so no two wallets share an account; the real bean-check accepts an export of adversarial
names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from beancount.core import account as bc_account
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.exports.names import account_code, account_name, segment, unsegment
from ledger.service import Ledger
from tests.ledger.conftest import cny

BEAN_CHECK = str(Path(sys.executable).with_name("bean-check"))
ADVERSARIAL = ("alice", "Alice", "ALICE", "li_wei", "li-wei", "li.wei", "liwei", "li_Wei", "a_b", "a-b", "a__b",
               "a_", "a-", "_a", "0day", "x0day", "x.0day", "x-0day", "X0day", "9", "09", "张伟", "émile", "Émile",
               "ß", "SS", "a--b", "a-_b", "a_-b", "x--61-", "x-", "", "--", "-", "_", "ǰ", "a\u0301", "١٢")


@pytest.mark.parametrize(("code", "name"), [
    ("liabilities:wallet:user:alice", "Liabilities:Wallet:User:Alice"),
    ("liabilities:wallet:user:li_wei", "Liabilities:Wallet:User:Li-Wei"),
    ("liabilities:wallet:user:li_wei:grant:12", "Liabilities:Wallet:User:Li-Wei:Grant:12"),
    ("revenues:gpu:nvidia-a100-sxm4-80gb", "Income:Gpu:Nvidia-a100-sxm4-80gb"),
    ("liabilities:wallet:project:lab.1", "Liabilities:Wallet:Project:Lab-1--6c61622e31-"),
    ("assets:funding:bank", "Assets:Funding:Bank"),
    ("expenses:grants", "Expenses:Grants"),
])
def test_natural_names_read_as_an_accountant_writes_them(code: str, name: str) -> None:
    assert account_name(code) == name
    assert account_code(name) == code


def check(part: str) -> str:
    name = segment(part)
    assert bc_account.is_valid(f"Liabilities:{name}"), (part, name)
    assert unsegment(name) == part
    return name


def test_adversarial_names_are_legal_distinct_and_reversible() -> None:
    names = [check(p) for p in ADVERSARIAL]
    assert len(set(names)) == len(ADVERSARIAL)


@settings(max_examples=2000)
@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=10))
def test_every_segment_is_legal_and_round_trips(part: str) -> None:
    check(part)  # decode(encode(x)) == x for all x: the mapping is injective


@settings(max_examples=500)
@given(st.lists(st.text(alphabet=st.sampled_from("aAzZ09_-.é张"), max_size=6), min_size=2, max_size=2, unique=True))
def test_no_two_wallets_share_an_account(parts: list[str]) -> None:
    a, b = (account_name(f"liabilities:wallet:user:{p}") for p in parts)
    assert a != b


def test_bean_check_accepts_an_export_of_awkward_names(ledger: Ledger, tmp_path: Path) -> None:
    users = ("alice", "li_wei", "a_b", "a-b", "x0day", "x.0day", "_svc", "a__b", "b_")
    for user in users:
        ledger.add_user(user, actor="admin")
        ledger.recharge(user, cny("1"), idem_key=f"r-{user}", actor="ops")
    path = tmp_path / "names.beancount"
    with path.open("w") as out:
        ledger.export("beancount", out)
    checked = subprocess.run([BEAN_CHECK, str(path)], capture_output=True, text=True, check=False, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    text = path.read_text()
    assert "open Liabilities:Wallet:User:Li-Wei CNY" in text
    assert "open Liabilities:Wallet:User:A-b CNY" in text and "open Liabilities:Wallet:User:A-B CNY" in text
