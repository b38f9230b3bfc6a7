"""Every exporter passes the same contract: the real tools (hledger 1.25, bean-check) accept the file, and
the balances they compute equal the database's, to the micro-unit."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import text

from ledger import journal, reports
from ledger.db import reading
from ledger.exports import EXPORTERS, csv_file
from ledger.exports.abc import EARNINGS
from ledger.money import MICRO, available, parse_amount
from ledger.records import UsageTick
from ledger.service import Ledger
from tests.ledger.conftest import cny
from tests.ledger.helpers import A100, T0, cpu, gpu, priced

HLEDGER = shutil.which("hledger") or "/usr/bin/hledger"
BEAN_CHECK = str(Path(sys.executable).with_name("bean-check"))

Balances = dict[str, int]


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)


def read_csv(path: Path) -> Balances:
    totals: Balances = defaultdict(int)
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            if row["kind"] != "closing":
                totals[row["account"]] += parse_amount(row["amount"])
    return dict(totals)


def read_hledger(path: Path) -> Balances:
    checked = run(HLEDGER, "-f", str(path), "check", "-s", "ordereddates")
    assert checked.returncode == 0, checked.stderr
    out = run(HLEDGER, "-f", str(path), "bal", "-N", "-E", "-O", "csv", "--layout=bare")
    assert out.returncode == 0, out.stderr
    return {r["account"]: parse_amount(r["balance"]) for r in csv.DictReader(io.StringIO(out.stdout))}


def read_beancount(path: Path) -> Balances:
    checked = run(BEAN_CHECK, str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    from beancount import loader
    from beancount.core import data

    entries, errors, _ = loader.load_file(str(path))
    assert not errors
    codes = {e.account: e.meta["code"] for e in entries if isinstance(e, data.Open)}
    totals: Balances = defaultdict(int)
    for e in entries:
        if isinstance(e, data.Transaction):
            for p in e.postings:
                totals[codes[p.account]] += int(p.units.number * MICRO)
    return dict(totals)


READERS: dict[str, Callable[[Path], Balances]] = {"csv": read_csv, "hledger": read_hledger,
                                                  "beancount": read_beancount}


@pytest.fixture
def busy(ledger: Ledger) -> Ledger:
    for name in ("alice", "li_wei", "x0day", "x.0day"):
        ledger.add_user(name, actor="admin")
    ledger.add_project("lab.1", actor="admin")
    ledger.assign_project("x0day", "lab.1", actor="admin")
    priced(ledger)
    ledger.recharge("alice", cny("100"), idem_key="r1", actor="ops", memo='cash; "quoted" memo')
    ledger.recharge("project:lab.1", cny("30"), idem_key="r2", actor="ops", channel="grant_office")
    ledger.grant("li_wei", cny("2"), expires_at=T0 + timedelta(days=40), idem_key="g1", actor="pi")
    for day in range(3):
        ledger.post_usage(UsageTick("n1", tuple(
            rec for user in ("alice", "li_wei", "x0day", "x.0day")
            for rec in (gpu(f"{user}/{day}/g", user=user, minute=day * 1440 + 600),
                        cpu(f"{user}/{day}/c", user=user, minute=day * 1440 + 600, seconds="7.25")))))
    # A newline in a memo, as entries written before the text rule (ledger.text) may hold: exports flatten it.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(journal, "check_text", lambda field, text: text)
        adj = ledger.adjust("x.0day", -cny("1.000001"), idem_key="a1", actor="ops", reason="manual\ncharge")
    ledger.reverse(adj.entry.id, idem_key="rv1", actor="ops", reason="typo")
    return ledger


@pytest.mark.parametrize("fmt", sorted(EXPORTERS))
def test_full_export_balances_equal_the_database(busy: Ledger, tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"ledger.{fmt}"
    with path.open("w") as out:
        busy.export(fmt, out)
    expected = {r.account: r.balance for r in busy.trial_balance().rows}
    got = READERS[fmt](path)
    assert {k: v for k, v in got.items() if v} == {k: v for k, v in expected.items() if v}


@pytest.mark.parametrize("fmt", sorted(EXPORTERS))
def test_period_export_carries_opening_and_closing_balances(busy: Ledger, tmp_path: Path, fmt: str) -> None:
    start, end = T0.date() + timedelta(days=1), T0.date() + timedelta(days=2)
    path = tmp_path / f"day.{fmt}"
    with path.open("w") as out:
        busy.export(fmt, out, start, end)
    before = {r.account: r.balance for r in busy.trial_balance(start).rows}
    after = {r.account: r.balance for r in busy.trial_balance(end).rows}
    # income and expenses start the period at zero, what they held before is closed into equity
    flows = [code for code in after if code.startswith(("revenues:", "expenses:"))]
    expected = after | {code: after[code] - before.get(code, 0) for code in flows}
    expected[EARNINGS] = sum(before.get(code, 0) for code in flows)
    assert expected[EARNINGS] and all(expected[code] for code in flows if code.startswith("revenues:"))
    got = READERS[fmt](path)
    assert {k: v for k, v in got.items() if v} == {k: v for k, v in expected.items() if v}
    assert after != {r.account: r.balance for r in busy.trial_balance().rows}  # the period is not everything


@pytest.mark.parametrize(("fmt", "tool"), [("hledger", "hledger"), ("beancount", "bean-check")])
def test_the_tools_catch_a_one_micro_unit_change(busy: Ledger, tmp_path: Path, fmt: str, tool: str) -> None:
    path = tmp_path / f"ledger.{fmt}"
    with path.open("w") as out:
        busy.export(fmt, out)
    text = path.read_text()
    target = "0.500000 CNY"
    assert target in text
    path.write_text(text.replace(target, "0.500001 CNY", 1).replace("-0.500000 CNY", "-0.500001 CNY", 1))
    argv = [HLEDGER, "-f", str(path), "check", "-s"] if tool == "hledger" else [BEAN_CHECK, str(path)]
    assert run(*argv).returncode != 0  # balanced, but the database's closing assertions disagree


def test_the_export_carries_the_chain_head(busy: Ledger) -> None:
    head = busy.verify().head
    assert head is not None
    for fmt, marker in (("hledger", f"chain head seq {head.seq} sha256 {head.sha256}"),
                        ("beancount", f'custom "gpuledger-chain-head" "{head.sha256}" {head.seq}')):
        out = io.StringIO()
        busy.export(fmt, out)
        assert marker in out.getvalue()


def test_statement_matches_its_period(busy: Ledger) -> None:
    day = T0.date()
    usage_days = busy.statement("alice", day, day + timedelta(days=3))
    assert usage_days.opening == 0
    assert [line.kind for line in usage_days.lines] == ["usage"] * 6
    # 3 GPU minutes at 0.50, and 3 x 7.25 core-seconds at 0.02/60 telescoped to round(21.75 * 0.02 / 60)
    assert usage_days.closing == sum(line.amount for line in usage_days.lines) == -(3 * cny("0.5") + 7250)
    everything = busy.statement("alice", day, date.today() + timedelta(days=2))
    assert everything.closing == busy.balance("alice").available == cny("100") + usage_days.closing
    later = busy.statement("alice", day + timedelta(days=1), date.today() + timedelta(days=2))
    assert later.opening == usage_days.lines[1].running
    assert busy.statement("alice", date(2020, 1, 1), date(2020, 2, 1)).lines == ()


def hledger_rows(path: Path, *query: str) -> list[dict[str, str]]:
    out = run(HLEDGER, "-f", str(path), "reg", *query, "-O", "csv")
    assert out.returncode == 0, out.stderr
    return list(csv.DictReader(io.StringIO(out.stdout)))


def test_hledger_filters_entries_by_their_tags(busy: Ledger, tmp_path: Path) -> None:
    path = tmp_path / "ledger.hledger"
    with path.open("w") as out:
        busy.export("hledger", out)
    alice = hledger_rows(path, "tag:user=^alice$", "liabilities:wallet")
    assert sorted(r["description"].split(" | ")[1] for r in alice) == ['recharge: cash  "quoted" memo'] + ["usage"] * 6
    assert {r["description"].split(" | ")[0] for r in alice} == {"alice"}  # the payee is the user, not the kind
    gpu_rows = hledger_rows(path, "tag:resource=gpu", "tag:node=n1", "tag:unit=gpu-second", "tag:quantity=60",
                            "tag:price-version", "tag:usage-key=alice/0/g", "revenues")
    assert [parse_amount(r["amount"].split()[0]) for r in gpu_rows] == [-cny("0.5")]
    # x0day bills to the project's wallet: both are tags of the same entries
    assert hledger_rows(path, "tag:user=^x0day$", "revenues") == hledger_rows(path, "tag:wallet=.*project:lab.1$",
                                                                            "revenues")
    payees = run(HLEDGER, "-f", str(path), "payees", "tag:link").stdout.split()  # entries, not the assertions
    assert set(payees) == {"alice", "li_wei", "x0day", "x.0day", "liabilities:wallet:project:lab.1"}


def test_a_reversal_shares_a_link_with_the_entry_it_corrects(busy: Ledger, tmp_path: Path) -> None:
    path = tmp_path / "ledger.hledger"
    with path.open("w") as out:
        busy.export("hledger", out)
    adjustment = next(r for r in hledger_rows(path, "tag:user=x.0day") if " | adjustment" in r["description"])
    linked = hledger_rows(path, f"tag:link=^{adjustment['code']}$", "x.0day")
    assert [r["description"].split(" | ")[1].split(":")[0] for r in linked] == ["adjustment", "reversal"]
    assert sum(parse_amount(r["amount"].split()[0]) for r in linked) == 0


def test_beancount_entries_carry_metadata_payees_and_links(busy: Ledger, tmp_path: Path) -> None:
    from beancount import loader
    from beancount.core import data

    path = tmp_path / "ledger.beancount"
    with path.open("w") as out:
        busy.export("beancount", out)
    entries, errors, _ = loader.load_file(str(path))
    assert not errors
    txns = [e for e in entries if isinstance(e, data.Transaction)]
    alice = [e for e in txns if e.meta.get("user") == "alice"]
    assert {e.payee for e in alice} == {"alice"} and len(alice) == 7
    usage = [e for e in alice if e.meta.get("resource") == "gpu"]
    assert [(e.meta["node"], e.meta["quantity"], e.meta["unit"], e.meta["wallet"]) for e in usage] == \
        [("n1", "60", "gpu-second", "liabilities:wallet:user:alice")] * 3
    assert all(e.meta["usage-key"] and e.meta["price-version"].isdigit() for e in usage)
    reversal = next(e for e in txns if e.narration.startswith("reversal"))
    original = reversal.meta["ref"]
    together = [e for e in txns if original in e.links]
    assert [e.narration.split(":")[0] for e in together] == ["adjustment", "reversal"]


def test_a_period_income_statement_shows_only_that_period(busy: Ledger, tmp_path: Path) -> None:
    day0 = T0.date()
    path = tmp_path / "days.hledger"
    with path.open("w") as out:
        busy.export("hledger", out, day0 + timedelta(days=1), day0 + timedelta(days=3))
    out = run(HLEDGER, "-f", str(path), "is", "-D", "-N", "-O", "csv", "--layout=bare")
    assert out.returncode == 0, out.stderr
    got = {r[0]: [parse_amount(v) for v in r[2:]] for r in csv.reader(io.StringIO(out.stdout)) if ":" in r[0]}
    tb = [{r.account: r.balance for r in busy.trial_balance(day0 + timedelta(days=d)).rows} for d in (1, 2, 3)]
    expected = {code: [tb[0].get(code, 0) - tb[1][code], tb[1].get(code, 0) - tb[2][code]]
                for code in tb[2] if code.startswith("revenues:")}  # each day's own revenue, shown positive
    assert got == expected and all(amount > 0 for day in expected.values() for amount in day)
    quiet = tmp_path / "quiet.hledger"
    with quiet.open("w") as out_file:
        busy.export("hledger", out_file, day0 + timedelta(days=10), day0 + timedelta(days=11))
    statement = run(HLEDGER, "-f", str(quiet), "is", "-N", "-O", "csv", "--layout=bare")
    assert statement.returncode == 0, statement.stderr
    assert run(HLEDGER, "-f", str(quiet), "check", "-s").returncode == 0
    # before the close into equity, the opening entry put everything ever earned in this quiet day
    assert [r for r in csv.reader(io.StringIO(statement.stdout)) if ":" in r[0]] == [], statement.stdout
    assert f"{EARNINGS}  -" in quiet.read_text()


def test_csv_round_trips_every_posting_exactly_with_the_entries_metadata(busy: Ledger, tmp_path: Path) -> None:
    path = tmp_path / "ledger.csv"
    with path.open("w", newline="") as out:
        busy.export("csv", out)
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    # the original columns stay first and in place; the metadata is appended
    assert tuple(reader.fieldnames or ()) == csv_file.COLUMNS
    assert csv_file.COLUMNS[:12] == ("entry_id", "date", "effective_at", "kind", "idem_key", "ref_entry_id",
                                     "usage_id", "memo", "line", "account", "amount", "currency")
    with reading(busy.engine) as conn:
        postings = [(int(e), int(line), code, int(amount), memo) for e, line, code, amount, memo in conn.execute(text(
            "SELECT p.entry_id, p.line, a.code, p.amount, e.memo FROM ledger.posting p"
            " JOIN ledger.account a ON a.id = p.account_id JOIN ledger.journal_entry e ON e.id = p.entry_id"
            " ORDER BY p.entry_id, p.line"))]
    entries = [r for r in rows if r["kind"] not in ("opening", "closing")]
    assert sorted((int(r["entry_id"]), int(r["line"]), r["account"], parse_amount(r["amount"]), r["memo"])
                  for r in entries) == postings
    gpu_row = next(r for r in entries if r["usage_key"] == "alice/0/g" and r["account"].startswith("revenues:"))
    assert {k: gpu_row[k] for k in ("user", "wallet", "node", "resource", "model", "quantity", "unit", "payee")} == {
        "user": "alice", "wallet": "liabilities:wallet:user:alice", "node": "n1", "resource": "gpu", "model": A100,
        "quantity": "60", "unit": "gpu-second", "payee": "alice"}
    assert gpu_row["price_version"].isdigit() and gpu_row["link"] == gpu_row["entry_id"]
    cpu_row = next(r for r in entries if r["usage_key"] == "x0day/1/c" and r["account"].startswith("liabilities:"))
    assert (Decimal(cpu_row["quantity"]), cpu_row["user"], cpu_row["wallet"], cpu_row["model"]) == (
        Decimal("7.25"), "x0day", "liabilities:wallet:project:lab.1", "")
    adjustment = next(r for r in entries if r["kind"] == "adjustment")
    reversal = next(r for r in entries if r["kind"] == "reversal")
    assert reversal["link"] == adjustment["link"] == adjustment["entry_id"] == reversal["ref_entry_id"]
    assert (reversal["payee"], reversal["usage_key"], reversal["node"]) == ("x.0day", "", "")
    project_recharge = next(r for r in entries if r["idem_key"] == "r2")
    assert (project_recharge["user"], project_recharge["payee"]) == ("", "liabilities:wallet:project:lab.1")
    closing = [r for r in rows if r["kind"] == "closing"]
    assert closing and all(r["user"] == r["payee"] == r["link"] == "" for r in closing)


def test_balances_at_an_instant_are_exact_from_either_side(busy: Ledger) -> None:
    """A period's opening and closing balances come from the history before the instant, or (the instant in the
    later half of the ledger) from the balance cache less what follows it: both equal the trial balance then."""
    exporter = csv_file.CsvExporter("CNY", busy.config.timezone)
    with reading(busy.engine) as conn:
        first, last = conn.execute(text("SELECT min(effective_at), max(effective_at) FROM ledger.journal_entry")).one()
        instants = [first, first + (last - first) / 4, first + (last - first) * 3 / 4, last, last + timedelta(days=1)]
        sides = []
        for t in instants:
            at_start_of_day = busy.trial_balance(t.astimezone(busy.config.timezone).date())
            day = t.astimezone(busy.config.timezone).replace(hour=0, minute=0, second=0, microsecond=0)
            sides.append(reports.nearer_the_end(conn, day))
            got = dict(exporter._balances(conn, day))
            assert got == {r.account: r.balance for r in at_start_of_day.rows}
            # A statement's opening takes the same two ways (li_wei's wallet has a grant sub-account).
            for wallet in ("liabilities:wallet:user:alice", "liabilities:wallet:user:li_wei",
                           "liabilities:wallet:project:lab.1"):
                ids = reports.wallet_accounts(conn, wallet)
                assert ids
                before = conn.execute(text("SELECT coalesce(sum(amount), 0) FROM ledger.posting"
                                           " WHERE account_id = ANY(:ids) AND effective_at < :t"),
                                      {"ids": ids, "t": day}).scalar_one()
                local = day.date()
                statement = reports.statement(conn, wallet, local, local + timedelta(days=1), busy.config.timezone)
                assert statement.opening == available(int(before)), (wallet, day)
    assert sides == [False, False, True, True, True]   # both sides taken


@pytest.mark.parametrize("fmt", ["hledger", "beancount"])
def test_a_reservation_charge_passes_the_tools_and_says_what_it_is(ledger: Ledger, tmp_path: Path, fmt: str) -> None:
    """A held GPU's charge (docs/queue.md, "Money") beside a usage charge: the real tools accept the file, its
    balances are the database's, and the entry is named a reservation on its own revenue account."""
    ledger.add_user("alice", actor="admin")
    priced(ledger)
    ledger.add_price("reservation", Decimal("0.20"), Decimal(60), model_pattern="NVIDIA A100*", match="glob",
                     actor="admin", valid_from=T0 - timedelta(days=30))
    ledger.recharge("alice", cny("10"), idem_key="r1", actor="ops")
    held = replace(gpu("alice/held", seconds="30.5"), resource="reservation", method="queue-grant",
                   epoch="n1/boot/alice/reservation/GPU-0")
    result = ledger.post_usage(UsageTick("n1", (gpu("alice/used", seconds="29.5"), held)))
    assert [o.amount for o in result.posted] == [245833, 101667]  # 29.5 s at 0.50 and 30.5 s at 0.20 a minute
    path = tmp_path / f"ledger.{fmt}"
    with path.open("w") as out:
        ledger.export(fmt, out)
    got = READERS[fmt](path)
    expected = {r.account: r.balance for r in ledger.trial_balance().rows}
    assert {k: v for k, v in got.items() if v} == {k: v for k, v in expected.items() if v}
    assert got["revenues:reservation:nvidia-a100-sxm4-80gb"] == -101667
    if fmt == "hledger":
        [row] = hledger_rows(path, "tag:resource=reservation", "revenues")
        assert row["description"].split(" | ")[1] == "usage: reservation"
    else:
        text_ = path.read_text()
        assert '"usage: reservation"' in text_ and 'resource: "reservation"' in text_
    assert ledger.verify().ok
