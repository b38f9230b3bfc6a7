"""The ledger's subcommands of ``gpuledger``: users, projects, money operations, prices, reports, exports,
``period close|list``, ``rollup rebuild``, ``audit verify``. Exit status: 0 ok, 1 audit found discrepancies, 2 bad
input or a ledger error (message on stderr), 3 the database is unreachable or not configured."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from ledger import chain, rollup
from ledger.accounts import FUNDING_DEFAULT
from ledger.config import LedgerConfig
from ledger.db import writing
from ledger.errors import ConfigError, LedgerError, LedgerUnavailable
from ledger.exports import FORMATS, focus_parquet
from ledger.exports.focus_file import FocusExporter
from ledger.instants import instant
from ledger.money import format_amount, parse_amount, parse_decimal
from ledger.records import UNITS, PostResult, UsageRow
from ledger.reports import USAGE_KEYS, local_midnight
from ledger.service import Ledger
from ledger.tabular import Amount, Cell, Rendering, listing_options, render

OK, DISCREPANCY, BAD_INPUT, UNAVAILABLE = 0, 1, 2, 3
PER_ALIASES = {"second": Decimal(1), "minute": Decimal(60), "hour": Decimal(3600)}

Action = Callable[[Ledger, argparse.Namespace], int]


def _actor() -> str:
    return os.environ.get("SUDO_USER") or os.environ.get("USER") or "cli"


def _run(action: Action) -> Callable[[argparse.Namespace], int]:
    """Wrap an action: build the ledger from the environment, turn errors into messages and exit codes."""
    def run(args: argparse.Namespace) -> int:
        try:
            ledger = Ledger.from_config(LedgerConfig.from_env(os.environ))
        except ConfigError as exc:
            print(f"gpuledger: {exc.message}", file=sys.stderr)
            return UNAVAILABLE
        try:
            return action(ledger, args)
        except (ConfigError, LedgerUnavailable) as exc:
            print(f"gpuledger: {exc.message}", file=sys.stderr)
            return UNAVAILABLE
        except LedgerError as exc:
            # the one place the ledger's commands print an error: amounts in the currency, not micro-units
            print(f"gpuledger: {exc.describe(ledger.config.currency)}", file=sys.stderr)
            return BAD_INPUT
        finally:
            ledger.close()
    return run


def _money(ledger: Ledger, micro: int) -> str:
    return f"{format_amount(micro)} {ledger.config.currency}"


def _posted(ledger: Ledger, result: PostResult, key: str) -> int:
    e = result.entry
    state = "posted" if result.created else "already posted (nothing changed)"
    print(f"entry {e.id} {e.kind} {state}; key {key}")
    for p in e.postings:
        print(f"  {p.account:<60} {_money(ledger, p.amount):>24}")
    return OK


def _key(args: argparse.Namespace, command: str) -> str:
    """The idempotency key: ``--key`` (reuse it to retry safely), else a fresh one printed with the result."""
    return str(args.key or f"cli:{command}:{uuid.uuid4()}")


def _amount(text: str) -> int:
    return parse_amount(text)


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from exc


def _when(ledger: Ledger, text: str) -> datetime:
    """An ISO datetime (with offset, or local to GPULEDGER_TIMEZONE), or a date meaning its local midnight."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise LedgerError(f"not a date or time: {text!r}", text=text) from exc
    if len(text) == 10:
        return local_midnight(value.date(), ledger.config.timezone)
    return value if value.tzinfo else value.replace(tzinfo=ledger.config.timezone)


def _show(lg: Ledger, a: argparse.Namespace, columns: Sequence[str], rows: Iterable[Sequence[Cell]],
          totals: dict[str, Cell] | None = None) -> None:
    """A listing or report in the ``--format`` asked for (options added by :func:`listing_options`)."""
    render(sys.stdout, Rendering.from_args(a, lg.config.currency), columns, rows, totals)


# -- actions ----------------------------------------------------------------------------------------------------

def users_add(lg: Ledger, a: argparse.Namespace) -> int:
    user = lg.add_user(a.name, display_name=a.display_name, actor=a.actor)
    print(f"user {user.name} added, wallet {user.wallet}")
    return OK


def users_list(lg: Ledger, a: argparse.Namespace) -> int:
    standing = lg.standings()
    _show(lg, a, ("user", "name", "project", "exempt", "credit limit", "available", "tier"),
          [(u.name, u.display_name, u.project, u.exempt,
            None if u.credit_limit is None else Amount(u.credit_limit), Amount(standing[u.name].available),
            standing[u.name].tier.value) for u in lg.list_users()])
    return OK


def users_show(lg: Ledger, a: argparse.Namespace) -> int:
    user = lg.get_user(a.name)
    standing = lg.standings([a.name])[a.name]
    print(f"user {user.name} ({user.display_name or '-'})\n  wallet {user.wallet}\n  charged to {standing.wallet}\n"
          f"  available {_money(lg, standing.available)}\n  tier {standing.tier.value}\n"
          f"  exempt {'yes' if user.exempt else 'no'}\n  credit limit "
          f"{'none' if user.credit_limit is None else _money(lg, user.credit_limit)}")
    mappings = [m for m in lg.list_mappings() if m.user == user.name]
    for m in mappings:
        print(f"  linux user {m.linux_user} on {m.node}")
    return OK


def users_map(lg: Ledger, a: argparse.Namespace) -> int:
    m = lg.map_linux_user(a.node, a.linux_user, a.user, actor=a.actor)
    print(f"{m.linux_user} on {m.node} -> {m.user}")
    return OK


def users_exempt(lg: Ledger, a: argparse.Namespace) -> int:
    user = lg.set_exempt(a.name, a.state == "on", actor=a.actor)
    print(f"user {user.name} exempt: {'yes' if user.exempt else 'no'}")
    return OK


def users_credit_limit(lg: Ledger, a: argparse.Namespace) -> int:
    limit = None if a.amount == "none" else _amount(a.amount)
    user = lg.set_credit_limit(a.name, limit, actor=a.actor)
    print(f"user {user.name} credit limit: {'none' if limit is None else _money(lg, limit)}")
    return OK


def users_project(lg: Ledger, a: argparse.Namespace) -> int:
    user = lg.assign_project(a.name, None if a.project == "none" else a.project, actor=a.actor)
    print(f"user {user.name} charged to {'own wallet' if user.project is None else 'project ' + user.project}")
    return OK


def projects_add(lg: Ledger, a: argparse.Namespace) -> int:
    project = lg.add_project(a.name, display_name=a.display_name, actor=a.actor)
    print(f"project {project.name} added, wallet {project.wallet}")
    return OK


def projects_list(lg: Ledger, a: argparse.Namespace) -> int:
    _show(lg, a, ("project", "name", "available"),
          [(p.name, p.display_name, Amount(lg.balance(f"project:{p.name}").available)) for p in lg.list_projects()])
    return OK


def recharge(lg: Ledger, a: argparse.Namespace) -> int:
    key = _key(a, "recharge")
    return _posted(lg, lg.recharge(a.wallet, _amount(a.amount), idem_key=key, actor=a.actor, memo=a.memo,
                                   channel=a.channel), key)


def grant(lg: Ledger, a: argparse.Namespace) -> int:
    key = _key(a, "grant")
    expires = _when(lg, a.expires) if a.expires else None
    return _posted(lg, lg.grant(a.wallet, _amount(a.amount), expires_at=expires, idem_key=key, actor=a.actor,
                                memo=a.memo), key)


def expire_grants(lg: Ledger, a: argparse.Namespace) -> int:
    results = lg.expire_grants(_when(lg, a.now) if a.now else None, actor=a.actor)
    for r in results:
        _posted(lg, r, r.entry.idem_key)
    print(f"{len(results)} grant(s) expired")
    return OK


def adjust(lg: Ledger, a: argparse.Namespace) -> int:
    key = _key(a, "adjust")
    return _posted(lg, lg.adjust(a.wallet, _amount(a.amount), idem_key=key, actor=a.actor, reason=a.reason,
                                 counter="writeoff" if a.writeoff else "adjustment"), key)


def refund(lg: Ledger, a: argparse.Namespace) -> int:
    key = _key(a, "refund")
    return _posted(lg, lg.refund(a.entry_id, _amount(a.amount), idem_key=key, actor=a.actor, reason=a.reason), key)


def reverse(lg: Ledger, a: argparse.Namespace) -> int:
    key = _key(a, "reverse")
    return _posted(lg, lg.reverse(a.entry_id, idem_key=key, actor=a.actor, reason=a.reason), key)


def prices_list(lg: Ledger, a: argparse.Namespace) -> int:
    _show(lg, a, ("id", "resource", "model", "match", "priority", "price", "valid from", "by"),
          [(v.id, v.resource, v.model_pattern or "-", v.match, v.priority, f"{v.amount} per {v.per} {v.unit}",
            instant(v.valid_from), v.actor) for v in lg.list_prices()])
    return OK


def prices_add(lg: Ledger, a: argparse.Namespace) -> int:
    per = PER_ALIASES.get(a.per) or parse_decimal(a.per, 6, "per")
    version = lg.add_price(a.resource, parse_decimal(a.amount, 12, "price"), per, model_pattern=a.model or "",
                           match=a.match, priority=a.priority,
                           valid_from=_when(lg, a.valid_from) if a.valid_from else None, actor=a.actor, memo=a.memo)
    print(f"price version {version.id}: {version.resource} {version.model_pattern or ''} {version.amount} per"
          f" {version.per} {version.unit} from {instant(version.valid_from)}")
    return OK


def balance(lg: Ledger, a: argparse.Namespace) -> int:
    b = lg.balance(a.wallet)
    print(f"{b.wallet}: {_money(lg, b.available)} ({b.tier.value})")
    return OK


def report_statement(lg: Ledger, a: argparse.Namespace) -> int:
    s = lg.statement(a.wallet, a.start, a.end)
    tz = lg.config.timezone
    if a.format == "table":
        print(f"{s.wallet}  {a.start} .. {a.end} (end exclusive, {tz.key})")
    _show(lg, a, ("entry", "when", "kind", "memo", "amount", "balance"),
          [(line.entry_id, instant(line.effective_at), line.kind, line.memo,
            Amount(line.amount), Amount(line.running)) for line in s.lines],
          {"wallet": s.wallet, "from": a.start.isoformat(), "to": a.end.isoformat(), "opening": Amount(s.opening),
           "closing": Amount(s.closing)})
    return OK


def report_trial_balance(lg: Ledger, a: argparse.Namespace) -> int:
    tb = lg.trial_balance(a.at)
    _show(lg, a, ("account", "kind", "balance"), [(r.account, r.kind, Amount(r.balance)) for r in tb.rows],
          {"total": Amount(tb.total)})
    return OK if tb.total == 0 else DISCREPANCY


def report_usage(lg: Ledger, a: argparse.Namespace) -> int:
    rows: Sequence[UsageRow] = lg.usage_report(a.start, a.end, a.by)
    _show(lg, a, ("key", "unit", "quantity", "charged"), [(r.key, r.unit, r.quantity, Amount(r.amount)) for r in rows])
    return OK


def report_revenue(lg: Ledger, a: argparse.Namespace) -> int:
    rows = lg.revenue(a.start, a.end)
    _show(lg, a, ("account", "revenue"), [(r.account, Amount(r.amount)) for r in rows],
          {"total": Amount(sum(r.amount for r in rows))})
    return OK


class _Progress(io.RawIOBase):
    """An export's bytes on their way to ``sink``, counted and shown on stderr (a terminal) a few times a second;
    the size of the whole is not known before the end, so it shows how far it got, not a percentage."""

    def __init__(self, sink: BinaryIO, err: TextIO) -> None:
        super().__init__()
        self._sink, self._err = sink, err
        self._bytes = self._lines = 0
        self._shown = time.monotonic()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self._sink.write(data)
        self._bytes += len(data)
        self._lines += data.count(b"\n")
        if time.monotonic() - self._shown >= 0.2:
            self.show()
        return len(data)

    def show(self, end: str = "") -> None:
        self._shown = time.monotonic()
        self._err.write(f"\rexported {self._lines} lines, {self._bytes // 1024} KiB{end}")
        self._err.flush()


def export(lg: Ledger, a: argparse.Namespace) -> int:
    if a.file_type is not None and a.format != FocusExporter.name:
        raise LedgerError("--format is for the focus report only (csv or parquet)", format=a.format)
    if a.file_type == "parquet":
        return _export_parquet(lg, a)
    to_stdout = a.output in (None, "-")
    # progress only for a person watching stderr, and never over an export that goes to that same terminal
    if not sys.stderr.isatty() or (to_stdout and sys.stdout.isatty()):
        with contextlib.nullcontext(sys.stdout) if to_stdout else open(a.output, "w", encoding="utf-8") as out:
            lg.export(a.format, out, a.start, a.end)
        return OK
    sys.stdout.flush()
    with contextlib.nullcontext(sys.stdout.buffer) if to_stdout else open(a.output, "wb") as sink:
        progress = _Progress(sink, sys.stderr)
        with io.TextIOWrapper(io.BufferedWriter(progress), encoding="utf-8") as out:
            lg.export(a.format, out, a.start, a.end)
        progress.show(end="\n")
    return OK


def _export_parquet(lg: Ledger, a: argparse.Namespace) -> int:
    """The FOCUS report as Parquet: binary, so never to a terminal, and without the line-counting progress."""
    focus_parquet.require_pyarrow()  # before a file is created: a missing pyarrow leaves nothing behind
    to_stdout = a.output in (None, "-")
    if to_stdout and sys.stdout.isatty():
        raise LedgerError("Parquet is binary: write it to a file (-o FILE) or a pipe")
    sys.stdout.flush()
    with contextlib.nullcontext(sys.stdout.buffer) if to_stdout else open(a.output, "wb") as sink:
        focus_parquet.export(lg.engine, lg.config.currency, lg.config.timezone, sink, a.start, a.end)
    return OK


def period_close(lg: Ledger, a: argparse.Namespace) -> int:
    c = lg.close_period(a.through, actor=a.actor, reason=a.reason)
    print(f"closed through {c.through} ({c.time_zone}): nothing may be dated before"
          f" {instant(c.closed_before)}"
          + ("" if c.head is None else f"; chain head seq {c.head.seq} sha256 {c.head.sha256}"))
    return OK


def period_list(lg: Ledger, a: argparse.Namespace) -> int:
    _show(lg, a, ("through", "zone", "closed before", "at", "by", "reason", "chain head"),
          [(c.through.isoformat(), c.time_zone, instant(c.closed_before),
            instant(c.at), c.actor, c.reason,
            "-" if c.head is None else f"{c.head.seq}:{c.head.sha256}") for c in lg.period_closes()])
    return OK


def rollup_rebuild(lg: Ledger, a: argparse.Namespace) -> int:
    """One transaction under the writer lock: ticks wait for it, then go on adding to the rebuilt rows."""
    start = None if a.start is None else _when(lg, a.start)
    end = None if a.end is None else _when(lg, a.end)
    with writing(lg.engine) as conn:
        # the daily level in the configured zone: set (rebuilt whole) when it is new or the zone changed
        rezoned = rollup.set_zone(conn, lg.config.timezone)
        written = rollup.rebuild(conn, start, end)
    print(f"usage rollup rebuilt: {written} hourly rows"
          + (f"; daily level rebuilt in {lg.config.timezone.key}" if rezoned else ""))
    return OK


def audit_verify(lg: Ledger, a: argparse.Namespace) -> int:
    anchor = None
    if a.anchor:
        seq, _, digest = a.anchor.partition(":")
        if not seq.isdigit() or len(digest) != 64:
            raise LedgerError(f"--anchor must be SEQ:SHA256HEX, got {a.anchor!r}", anchor=a.anchor)
        anchor = (int(seq), digest)
    report = lg.verify(anchor, [] if a.anchor_file is None else chain.read_anchors(Path(a.anchor_file)))
    for check, problems in report.counts.items():
        print(f"{'ok  ' if problems == 0 else 'FAIL'}  {check}" + (f" ({problems} problems)" if problems else ""))
    for p in report.problems:
        print(f"  {p.check}: {p.subject}: {p.detail}")
    if report.head:
        print(f"chain head: seq {report.head.seq} sha256 {report.head.sha256}")
    print("ledger verified" if report.ok else f"{len(report.problems)} discrepancies")
    return OK if report.ok else DISCREPANCY


# -- wiring -----------------------------------------------------------------------------------------------------

def _command(subparsers: Any, name: str, action: Action, help_text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(name, help=help_text, description=help_text)
    parser.add_argument("--actor", default=_actor(), help="who does this (default: $SUDO_USER or $USER)")
    parser.set_defaults(func=_run(action))
    return parser


def _group(subparsers: Any, name: str, help_text: str) -> Any:
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    return parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND", required=True)


def _key_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--key", help="idempotency key; repeating a command with the same key posts at most once")


def _period(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--from", dest="start", type=_date, required=required, help="first local day")
    parser.add_argument("--to", dest="end", type=_date, required=required, help="day after the last (exclusive)")


USER_NAME = "the billing user's name"
WALLET = "user:NAME, project:NAME or a user name"
AMOUNT = "an amount in the currency, up to 6 decimals (12.50)"
MEMO = "free text kept with the entry"
REASON = "why, kept with the entry for the audit trail"


def register(subparsers: Any) -> None:
    users = _group(subparsers, "users", "billing users, their wallets and Linux accounts")
    p = _command(users, "add", users_add, "add a billing user (and their wallet)")
    p.add_argument("name", help=USER_NAME)
    p.add_argument("--display-name", default="", help="the person's name as reports show it")
    listing_options(_command(users, "list", users_list, "every user with balance and tier"))
    _command(users, "show", users_show, "one user").add_argument("name", help=USER_NAME)
    p = _command(users, "map", users_map, "map a Linux account on a node (or * for every node) to a billing user")
    p.add_argument("node", help="the node's inventory name, or * for every node")
    p.add_argument("linux_user", help="the Linux account name on that node")
    p.add_argument("user", help="the billing user it is charged to")
    p = _command(users, "exempt", users_exempt, "exempt a user from enforcement (usage is still charged)")
    p.add_argument("name", help=USER_NAME)
    p.add_argument("state", choices=("on", "off"), help="on exempts, off enforces again")
    p = _command(users, "credit-limit", users_credit_limit, "how far below zero a user may go before blocking")
    p.add_argument("name", help=USER_NAME)
    p.add_argument("amount", help="an amount in the currency, or none")
    p = _command(users, "project", users_project, "charge a user's usage to a project wallet (or none)")
    p.add_argument("name", help=USER_NAME)
    p.add_argument("project", help="the project's name, or none for the user's own wallet")

    projects = _group(subparsers, "projects", "project wallets several users draw on")
    p = _command(projects, "add", projects_add, "add a project (and its wallet)")
    p.add_argument("name", help="the project's name (lower case, digits, - and _)")
    p.add_argument("--display-name", default="", help="the project's name as reports show it")
    listing_options(_command(projects, "list", projects_list, "every project with its balance"))

    p = _command(subparsers, "recharge", recharge, "money paid into a wallet")
    p.add_argument("wallet", help=WALLET)
    p.add_argument("amount", help=AMOUNT)
    p.add_argument("--memo", default="", help=MEMO)
    p.add_argument("--channel", default=FUNDING_DEFAULT, help="funding account assets:funding:CHANNEL")
    _key_option(p)
    p = _command(subparsers, "grant", grant, "money given to a wallet, optionally expiring")
    p.add_argument("wallet", help=WALLET)
    p.add_argument("amount", help=AMOUNT)
    p.add_argument("--expires", help="date (local midnight) or ISO time")
    p.add_argument("--memo", default="", help=MEMO)
    _key_option(p)
    p = _command(subparsers, "expire-grants", expire_grants, "give back what is left of expired grants")
    p.add_argument("--now", help="expire as of this date or time (default: now)")
    p = _command(subparsers, "adjust", adjust, "credit (+) or debit (-) a wallet with a reason")
    p.add_argument("wallet", help=WALLET)
    p.add_argument("amount", help="signed: +5 credits the wallet, -5 debits it")
    p.add_argument("--reason", required=True, help=REASON)
    p.add_argument("--writeoff", action="store_true", help="book against expenses:writeoff")
    _key_option(p)
    p = _command(subparsers, "refund", refund, "give back part or all of a usage charge")
    p.add_argument("entry_id", type=int, help="the usage entry's id (from a statement or export)")
    p.add_argument("amount", help="how much of the charge to give back, in the currency")
    p.add_argument("--reason", required=True, help=REASON)
    _key_option(p)
    p = _command(subparsers, "reverse", reverse, "reverse an entry in full (once)")
    p.add_argument("entry_id", type=int, help="the entry's id (from a statement or export)")
    p.add_argument("--reason", required=True, help=REASON)
    _key_option(p)

    prices = _group(subparsers, "prices", "the dated price book")
    listing_options(_command(prices, "list", prices_list, "every price version"))
    p = _command(prices, "add", prices_add, "add a price version (never edits an old one)")
    p.add_argument("resource", choices=tuple(UNITS),
                   help="what the price is for (reservation: a granted GPU held unused)")
    p.add_argument("amount", help="currency per --per units")
    p.add_argument("--per", default="second", help="units the amount buys: a number, second, minute or hour")
    p.add_argument("--model", help="GPU model name or glob pattern (gpu and reservation prices)")
    p.add_argument("--match", choices=("exact", "glob"), default="exact", help="how --model is compared")
    p.add_argument("--priority", type=int, default=0, help="the higher wins when several versions match")
    p.add_argument("--valid-from", help="date or ISO time (default: now)")
    p.add_argument("--memo", default="", help=MEMO)

    _command(subparsers, "balance", balance, "what a wallet holds, and its tier").add_argument("wallet", help=WALLET)

    report = _group(subparsers, "report", "statements and reports (periods in GPULEDGER_TIMEZONE)")
    p = _command(report, "statement", report_statement, "a wallet's opening, entries and closing for a period")
    p.add_argument("wallet", help=WALLET)
    _period(p)
    listing_options(p)
    p = _command(report, "trial-balance", report_trial_balance, "every account's balance (sums to zero)")
    p.add_argument("--at", type=_date, help="as at the start of this local day (default: now)")
    listing_options(p)
    p = _command(report, "usage", report_usage, "usage and charges for a period")
    _period(p)
    p.add_argument("--by", choices=sorted(USAGE_KEYS), default="user", help="one row per this (default: user)")
    listing_options(p)
    p = _command(report, "revenue", report_revenue, "revenue per resource for a period")
    _period(p)
    listing_options(p)

    p = _command(subparsers, "export", export,
                 "CSV, hledger journal or Beancount file of the ledger, or a FOCUS cost report, streamed")
    p.add_argument("format", choices=FORMATS, help="what the file is for (focus: FinOps cost tools)")
    p.add_argument("--format", dest="file_type", choices=("csv", "parquet"),
                   help="the focus report's file: csv (default) or parquet (needs gpuledger[parquet])")
    _period(p, required=False)
    p.add_argument("-o", "--output", help="file (default: standard output)")

    period = _group(subparsers, "period", "period close: closed periods never change")
    p = _command(period, "close", period_close, "close every day up to --through (needs GPULEDGER_ADMIN_DATABASE_URL)")
    p.add_argument("--through", type=_date, required=True, help="the last local day to close (it must be over)")
    p.add_argument("--reason", required=True, help=REASON)
    listing_options(_command(period, "list", period_list, "every close, oldest first"))

    rollups = _group(subparsers, "rollup", "the hourly usage rollup the console's pages read")
    p = _command(rollups, "rebuild", rollup_rebuild, "recompute the rollup from the usage rows (all, or whole hours"
                                                     " --from to --to), its daily level in the configured zone")
    p.add_argument("--from", dest="start", help="first hour: a date (local midnight) or ISO time (default: the start)")
    p.add_argument("--to", dest="end", help="end hour, exclusive: a date or ISO time (default: no end)")

    audit = _group(subparsers, "audit", "checks an auditor can run")
    p = _command(audit, "verify", audit_verify, "recompute balances, entries, the hash chain and every charge")
    p.add_argument("--anchor", help="SEQ:SHA256 of a chain head saved earlier (from an export)")
    p.add_argument("--anchor-file", help="every chain head in this file (the controller's anchor file, or lines"
                                         " '<time> <seq> <sha256>' from its log) must still be in the chain")
