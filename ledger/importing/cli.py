"""``gpuledger import hit-aiot-ops``: bring a lab over from the system gpuledger replaces (docs/migrating.md).

It prints what it found for an admin to review (exemptions, lists it cannot carry over, users without a mapping,
every GPU model's price or UNPRICED), the reconciliation of the old books per user (table, and CSV with
``--report-csv``), then writes everything in one transaction, or with ``--dry-run`` nothing. Exit status as every
ledger command: 0 done (or already done), 2 refused (the reasons on stderr, nothing written), 3 no database.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ledger.cli import BAD_INPUT, OK, USER_NAME, _command, _group, _period, _show, _when
from ledger.db import reading, writing
from ledger.importing import apply, evidence, source
from ledger.importing.plan import DEFAULT_CREDIT, SOURCE, ImportRefused, Plan, build
from ledger.money import parse_decimal
from ledger.reports import local_midnight
from ledger.service import Ledger
from ledger.tabular import Amount, Rendering, listing_options, render

DSN_KEY = "GPULEDGER_IMPORT_DSN"
RECONCILIATION = ("user", "initial credit", "recharges", "usage costs", "expected", "old balance", "difference")


def _nodes(pairs: Sequence[str]) -> dict[str, str]:
    nodes = {}
    for pair in pairs:
        old, sep, new = pair.partition("=")
        if not sep or not old or not new:
            raise ImportRefused([f"--node takes OLD=NEW (the old node_id and the gpuledger node name), got {pair!r}"])
        nodes[old] = new
    return nodes


def _reconciliation(plan: Plan, how: Rendering, out: Any) -> None:
    rows = [(r.user, Amount(r.initial), Amount(r.recharges), Amount(r.costs), Amount(r.expected),
             Amount(r.old_balance), Amount(r.difference)) for r in plan.reconciliation]
    totals = None if how.format == "csv" else {
        "total difference": Amount(sum(r.difference for r in plan.reconciliation)),
        "total opening balances": Amount(sum(b for _, b in plan.openings))}
    render(out, how, RECONCILIATION, rows, totals)


def hit_aiot_ops(lg: Ledger, a: argparse.Namespace) -> int:
    dsn = a.dsn or os.environ.get(DSN_KEY)
    if not dsn:
        print(f"gpuledger: the old database: give --dsn URL or set {DSN_KEY}", file=sys.stderr)
        return BAD_INPUT
    nodes = _nodes(a.node)
    initial = parse_decimal(a.initial_credit, 6, "--initial-credit")
    with source.reading(dsn) as old:
        snap = source.snapshot(old)
        with reading(lg.engine) as conn:
            recorded = apply.recorded_cutover(conn, SOURCE)
        cutover = _when(lg, a.cutover) if a.cutover else recorded or datetime.now(UTC)
        plan = build(snap, cutover=cutover, nodes=nodes, initial_credit=initial)
        print(f"{SOURCE}: cutover {cutover.isoformat()}; " + ", ".join(f"{k} {v}" for k, v in plan.counts.items()))
        for line in plan.review:
            print(f"  {line}")
        _reconciliation(plan, Rendering(currency=lg.config.currency), sys.stdout)
        if a.report_csv:
            with Path(a.report_csv).open("w", encoding="utf-8", newline="") as out:
                _reconciliation(plan, Rendering("csv", True, lg.config.currency), out)
        if a.dry_run:
            with reading(lg.engine) as conn:
                earlier = apply.previous(conn, plan)
                problems = [] if earlier else apply.conflicts(conn, plan)
            if problems:
                raise ImportRefused(problems)
            print("dry run: nothing written;" + (" this content was imported already (run"
                                                  f" {earlier.run_id}): a run would change nothing" if earlier else
                                                  " a run would write the above"))
            return OK
        with writing(lg.engine) as conn:
            outcome = apply.run(conn, plan, snap.recharges, source.usage_rows(old), currency=lg.config.currency,
                                actor=a.actor)
    if outcome.created:
        print(f"imported as run {outcome.run_id}")
    else:
        print(f"already imported (run {outcome.run_id}): nothing changed")
    return OK


def history(lg: Ledger, a: argparse.Namespace) -> int:
    tz = lg.config.timezone
    with reading(lg.engine) as conn:
        found = evidence.lines(conn, a.user, local_midnight(a.start, tz), local_midnight(a.end, tz))
    _show(lg, a, ("at", "source", "kind", "node", "linux user", "gpus", "cpu percent", "amount"),
          ((line.at.astimezone(tz).isoformat(), line.source, line.kind, line.node, line.linux_user, line.gpus,
            line.cpu_percent, Amount(line.amount)) for line in found))
    return OK


def register(subparsers: Any) -> None:
    imports = _group(subparsers, "import", "bring a lab over from the system gpuledger replaces")
    p = _command(imports, "hit-aiot-ops", hit_aiot_ops,
                 "import users, balances, mappings, exemptions, prices and history from hit-aiot-ops (read-only there)")
    p.add_argument("--dsn", help=f"the old PostgreSQL URL (better: {DSN_KEY}, which ps does not show)")
    p.add_argument("--cutover", help="the moment of the move (ISO time, or a date: its local midnight); default"
                   " now, or the cutover of an earlier import")
    p.add_argument("--dry-run", action="store_true", help="print what would be written and write nothing")
    p.add_argument("--node", action="append", default=[], metavar="OLD=NEW",
                   help="the gpuledger node name of an old node_id (repeat; an old id not named is kept as it is)")
    p.add_argument("--initial-credit", default=str(DEFAULT_CREDIT),
                   help="the credit the old system gave every new user (its default_balance, 100)")
    p.add_argument("--report-csv", metavar="FILE", help="also write the reconciliation as CSV to FILE")
    p = _command(imports, "history", history,
                 "a user's imported lines from before the cutover (evidence: never charged here)")
    p.add_argument("user", help=USER_NAME)
    _period(p)
    listing_options(p)



