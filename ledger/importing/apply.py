"""Writing a plan: one ledger transaction (``ledger.db.writing``: the writer lock, the hash-chain seal, the
deferred balance checks at COMMIT), so an import is all there or not there at all, whenever it is stopped.

Each user's balance at the cutover is one opening entry (kind ``adjustment``, counter ``opening``) against
``equity:migration:<source>``, dated at the cutover: the old history does not add up to the old balances
(plan.Reconciliation), so the money is taken as the old system left it, not re-derived. A zero balance needs no
entry. The old usage and recharges are written to ``ledger.imported_usage`` / ``imported_recharge``, evidence
tagged with the run, never rated or posted. ``ledger.import_run`` (one row per source) makes a second run of the
same content a no-op and a run of other content a refusal.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.engine import Connection

from ledger import auditlog, directory, journal, prices
from ledger.accounts import OPENING_COUNTER, ensure_account, migration_equity_code
from ledger.errors import LedgerError
from ledger.importing.plan import PER_MINUTE, ImportRefused, Plan, micro
from ledger.importing.source import OldRecharge, OldUsage
from ledger.money import Side, signed
from ledger.records import PostingLine


@dataclass(frozen=True)
class Outcome:
    created: bool            # False: this content was imported before, nothing changed
    run_id: int
    counts: dict[str, int]


def previous(conn: Connection, plan: Plan) -> Outcome | None:
    """The earlier import of ``plan.source``: None if there is none, its Outcome if it had this very content;
    ImportRefused if it had other content (the old database changed since, or another cutover was given)."""
    row = conn.execute(text("SELECT id, source_sha256, cutover, counts FROM ledger.import_run WHERE source = :s"),
                       {"s": plan.source}).first()
    if row is None:
        return None
    if bytes(row.source_sha256) != plan.sha256:
        raise ImportRefused([f"{plan.source} was imported already (run {row.id}, cutover {row.cutover.isoformat()})"
                             " from other content: the old database changed since, or the cutover differs"])
    return Outcome(False, int(row.id), dict(row.counts))


def conflicts(conn: Connection, plan: Plan) -> list[str]:
    """What in the ledger stands in the way: billing users of the old names, Linux accounts mapped elsewhere."""
    names = [user for user, _ in plan.openings]
    taken = [n for (n,) in conn.execute(text("SELECT name FROM ledger.billing_user WHERE name = ANY(:n) ORDER BY name"),
                                        {"n": names})]
    problems = [f"billing user {n!r} exists already in gpuledger" for n in taken]
    for node, linux_user, user in plan.mappings:
        mapped = directory.get_mapping(conn, node, linux_user)
        if mapped is not None and mapped.user != user:
            problems.append(f"{linux_user} on {node} is mapped to {mapped.user!r} already,"
                            f" the old system says {user!r}")
    return problems


def run(conn: Connection, plan: Plan, recharges: Iterable[OldRecharge], usage: Iterable[OldUsage], *, currency: str,
        actor: str) -> Outcome:
    """Write ``plan`` in ``conn``'s transaction (which must hold the writer lock: ``ledger.db.writing``)."""
    earlier = previous(conn, plan)
    if earlier is not None:
        return earlier
    problems = conflicts(conn, plan)
    if problems:
        raise ImportRefused(problems)
    run_id = int(conn.execute(
        text("INSERT INTO ledger.import_run (source, cutover, source_sha256, counts, actor)"
             " VALUES (:s, :c, :h, CAST(:n AS jsonb), :a) RETURNING id"),
        {"s": plan.source, "c": plan.cutover, "h": plan.sha256, "n": json.dumps(plan.counts), "a": actor}).scalar_one())
    ids = {user: directory.add_user(conn, user, "", currency).id for user, _ in plan.openings}
    _openings(conn, plan, currency, actor)
    for node, linux_user, user in plan.mappings:
        directory.set_mapping(conn, node, linux_user, user)
    for user in sorted({user for user, _ in plan.exemptions}):
        directory.update_user(conn, user, exempt=True)
    _prices(conn, plan, actor)
    recharge_rows = _copy(conn, "imported_recharge", ("run_id", "source_id", "user_id", "amount", "method", "at"),
                          ((run_id, r.id, ids[r.user], micro(r.amount, f"recharge {r.id}"), r.method, r.at)
                           for r in recharges))
    usage_rows = _copy(conn, "imported_usage",
                       ("run_id", "source_id", "node", "linux_user", "user_id", "at", "pid", "cpu_percent", "memory_mb",
                        "gpu_models", "cost"),
                       ((run_id, u.id, plan.node(u.node), u.linux_user, ids[u.user], u.at, u.pid, u.cpu_percent,
                         u.memory_mb, list(u.gpu_models), micro(u.cost, f"usage row {u.id}")) for u in usage))
    if (recharge_rows, usage_rows) != (plan.recharges, plan.usage_rows):
        # the same snapshot was summed for the plan: a difference is a bug, and the transaction rolls back
        raise LedgerError("the old rows read differ from the snapshot's counts", read=[recharge_rows, usage_rows],
                          planned=[plan.recharges, plan.usage_rows])
    counts = plan.counts
    auditlog.record(conn, actor=actor, action=f"import.{plan.source}", target=f"import:{run_id}", before=None,
                    after={"source": plan.source, "cutover": plan.cutover, "sha256": plan.sha256.hex(),
                           "counts": counts}, request_id=None)
    return Outcome(True, run_id, counts)


def _openings(conn: Connection, plan: Plan, currency: str, actor: str) -> None:
    equity = migration_equity_code(plan.source)
    ensure_account(conn, equity, currency)
    for user, balance in plan.openings:
        if balance == 0:
            continue
        wallet = directory.wallet_of(conn, user)
        # the user's money is a credit to their wallet (a liability) and a debit to the source's equity
        side = Side.CREDIT if balance > 0 else Side.DEBIT
        postings = (PostingLine(wallet, signed(side, abs(balance))), PostingLine(equity, -signed(side, abs(balance))))
        journal.post(conn, journal.Draft(
            "adjustment", f"import:{plan.source}:opening:{user}", plan.cutover, postings, actor,
            f"opening balance from {plan.source} at the cutover", facts={"counter": OPENING_COUNTER}))


def _prices(conn: Connection, plan: Plan, actor: str) -> None:
    memo = f"{plan.source} resource_prices at the cutover"
    if plan.cpu_per_minute is not None:
        prices.insert(conn, resource="cpu", amount=plan.cpu_per_minute, per=PER_MINUTE, model_pattern="",
                      match="exact", priority=0, valid_from=plan.cutover, actor=actor, memo=memo)
    for model in plan.priced:
        assert model.per_minute is not None
        prices.insert(conn, resource="gpu", amount=model.per_minute, per=PER_MINUTE, model_pattern=model.model,
                      match="exact", priority=0, valid_from=plan.cutover, actor=actor,
                      memo=f"{memo} (old key {model.key})")


def _copy(conn: Connection, table: str, columns: tuple[str, ...], rows: Iterable[tuple[object, ...]]) -> int:
    """COPY ``rows`` into ``ledger.<table>`` on the transaction's own connection; how many there were."""
    raw = conn.connection.driver_connection
    assert raw is not None
    count = 0
    with raw.cursor() as cur, cur.copy(f"COPY ledger.{table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
            count += 1
    return count


def recorded_cutover(conn: Connection, source: str) -> datetime | None:
    """The cutover an earlier import of ``source`` used (a rerun without ``--cutover`` reuses it)."""
    value = conn.execute(text("SELECT cutover FROM ledger.import_run WHERE source = :s"), {"s": source}).scalar()
    return value if isinstance(value, datetime) else None
