"""What an import of hit-aiot-ops will write, decided from the old snapshot alone (pure, no database).

Money: the old DECIMAL(10,2) balances and recharges and DECIMAL(10,4) costs become micro-units exactly (x 10^6;
a value with more than six decimals is refused, never rounded), so no rounding happens anywhere in an import.
Prices: the old per-minute price of a model becomes ``amount`` per 60 gpu-seconds (CPU: per 60 core-seconds),
also exact. The old controller priced a model by substring, longest key first, else a silent default
(billing.go); here every distinct model string the old usage and node rows name is looked up that way once and
written as an exact-match price version, and a model no key matches is listed as unpriced (the default is not
imported: the ledger refuses to charge an unpriced GPU, MissingPrice, and keeps the record to retry).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from ledger.accounts import check_name
from ledger.errors import InvalidName, LedgerError
from ledger.importing.source import Snapshot
from ledger.journal import sha256_of
from ledger.money import MICRO

SOURCE = "hit-aiot-ops"
CPU_KEY = "CPU_CORE"          # the old resource_prices row that holds the CPU price per core-minute
DEFAULT_CREDIT = Decimal(100)  # the old default_balance: every new name started with it, unrecorded
PER_MINUTE = Decimal(60)


class ImportRefused(LedgerError):
    """The old data cannot be imported as it is; ``problems`` lists every reason (nothing was written)."""

    code = "import_refused"

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("import refused, nothing written: " + "; ".join(problems), problems=list(problems))


def micro(value: Decimal, what: str) -> int:
    """``value`` in micro-units, exactly (ImportRefused if it has more than six decimals)."""
    scaled = value * MICRO
    if scaled != scaled.to_integral_value():
        raise ImportRefused([f"{what} {value} has more than six decimals"])
    return int(scaled)


@dataclass(frozen=True)
class Reconciliation:
    """One user's old books: initial credit + recharges - usage costs should be the balance; it is not."""

    user: str
    initial: int
    recharges: int
    costs: int
    old_balance: int

    @property
    def expected(self) -> int:
        return self.initial + self.recharges - self.costs

    @property
    def difference(self) -> int:
        """Old balance minus what its own history adds up to: > 0 the old system under-charged."""
        return self.old_balance - self.expected


@dataclass(frozen=True)
class ModelPrice:
    model: str
    key: str | None            # the old price row whose substring matched; None: unpriced
    per_minute: Decimal | None


@dataclass(frozen=True)
class Plan:
    source: str
    cutover: datetime
    openings: tuple[tuple[str, int], ...]              # (user, opening balance in micro-units)
    reconciliation: tuple[Reconciliation, ...]
    mappings: tuple[tuple[str, str, str], ...]          # (node, Linux user, billing user)
    exemptions: tuple[tuple[str, str], ...]             # (billing user, the old row it comes from)
    cpu_per_minute: Decimal | None
    models: tuple[ModelPrice, ...]
    review: tuple[str, ...]                             # what an admin should read before and after
    recharges: int = 0
    usage_rows: int = 0
    nodes: Mapping[str, str] = field(default_factory=dict)
    sha256: bytes = b""

    @property
    def priced(self) -> tuple[ModelPrice, ...]:
        return tuple(m for m in self.models if m.per_minute is not None)

    def node(self, old: str) -> str:
        return self.nodes.get(old, old)

    @property
    def counts(self) -> dict[str, int]:
        return {"users": len(self.openings), "opening_entries": sum(1 for _, b in self.openings if b),
                "mappings": len(self.mappings), "exemptions": len(self.exemptions),
                "prices": len(self.priced) + (self.cpu_per_minute is not None),
                "unpriced_models": len(self.models) - len(self.priced), "recharges": self.recharges,
                "usage_rows": self.usage_rows}


def old_price(model: str, keys: Sequence[str]) -> str | None:
    """The old controller's match (billing.go): the longest key contained in the model string, else none
    (where it used its default); equal lengths in name order, so the choice is the same every run."""
    matching = sorted((k for k in keys if k and k in model), key=lambda k: (-len(k), k))
    return matching[0] if matching else None


def _exemptions(snap: Snapshot) -> tuple[tuple[str, str], ...]:
    """The old SSH exemptions as billing users: a row (node or ``*``, Linux name) names every billing user that
    Linux name is mapped to on that node (any node for ``*``), or the billing user of that name."""
    users = {u.name for u in snap.users}
    found: set[tuple[str, str]] = set()
    for entry in (e for e in snap.lists if e.table == "ssh_exemptions"):
        origin = f"ssh_exemptions ({entry.node}, {entry.linux_user})"
        targets = {m.user for m in snap.mappings
                   if m.linux_user == entry.linux_user and entry.node in ("*", m.node)}
        if not targets and entry.linux_user in users:
            targets = {entry.linux_user}
        found |= {(user, origin) for user in targets}
    return tuple(sorted(found))


def build(snap: Snapshot, *, cutover: datetime, nodes: Mapping[str, str] | None = None,
          initial_credit: Decimal = DEFAULT_CREDIT) -> Plan:
    """The plan, or ImportRefused naming every problem at once."""
    nodes = dict(nodes or {})
    problems: list[str] = []
    users = {u.name for u in snap.users}
    for name in sorted(users):
        try:
            check_name("user", name)
        except InvalidName:
            problems.append(f"old user {name!r} is not a valid gpuledger name (a-z 0-9 _ . -, first a letter or _)")
    for what, names in (("recharge", {r.user for r in snap.recharges}), ("mapping", {m.user for m in snap.mappings}),
                        ("usage", {u.user for u in snap.usage})):
        problems += [f"a {what} row names {n!r}, who is not in users" for n in sorted(names - users)]
    late = [u.user for u in snap.usage if u.last_at > cutover] + [r.user for r in snap.recharges if r.at > cutover]
    if late:
        problems.append(f"the old system recorded usage or recharges after the cutover {cutover.isoformat()}"
                        f" (users {sorted(set(late))}): stop its controller first, or give a later --cutover")
    try:
        recharged = dict.fromkeys(users, 0)
        for r in snap.recharges:
            recharged[r.user] = recharged.get(r.user, 0) + micro(r.amount, f"recharge {r.id}")
        costs = {u.user: micro(u.cost, f"the usage costs of {u.user}") for u in snap.usage}
        initial = micro(initial_credit, "the initial credit")
        balances = {u.name: micro(u.balance, f"the balance of {u.name}") for u in snap.users}
    except ImportRefused as exc:
        problems += exc.details["problems"]
    if problems:
        raise ImportRefused(problems)
    reconciliation = tuple(Reconciliation(n, initial, recharged.get(n, 0), costs.get(n, 0), balances[n])
                           for n in sorted(users))
    keys = [k for k, _ in snap.prices if k != CPU_KEY]
    price_of = dict(snap.prices)
    models = tuple(ModelPrice(m, key, None if key is None else price_of[key])
                   for m in snap.models for key in (old_price(m, keys),))
    mappings = tuple(sorted({(nodes.get(m.node, m.node), m.linux_user, m.user) for m in snap.mappings}))
    exemptions = _exemptions(snap)
    plan = Plan(SOURCE, cutover, tuple((n, balances[n]) for n in sorted(users)), reconciliation, mappings,
                exemptions, price_of.get(CPU_KEY), models, _review(snap, mappings, exemptions, models, keys),
                len(snap.recharges), sum(u.rows for u in snap.usage), nodes)
    return Plan(**{**plan.__dict__, "sha256": sha256_of(_content(snap, plan, initial_credit))})


def _review(snap: Snapshot, mappings: Sequence[tuple[str, str, str]], exemptions: Sequence[tuple[str, str]],
            models: Sequence[ModelPrice], keys: Sequence[str]) -> tuple[str, ...]:
    lines = [f"exemption: {user} is exempt from enforcement, from the old {origin}" for user, origin in exemptions]
    lines += [f"not imported: {e.table} ({e.node}, {e.linux_user}): gpuledger has no SSH allow or deny list"
              for e in snap.lists if e.table != "ssh_exemptions"]
    mapped = {user for _, _, user in mappings}
    lines += [f"no mapping: {u.name} is charged only for a Linux account of the same name"
              for u in snap.users if u.name not in mapped]
    used = {m.key for m in models}
    lines += [f"price: {m.model} matched the old key {m.key!r}: {m.per_minute} a minute" for m in models if m.key]
    lines += [f"UNPRICED: {m.model} matched no old price (the old system charged it its default):"
              " its usage is refused until a price covers it (gpuledger prices add gpu ... --model)"
              for m in models if m.key is None]
    lines += [f"not imported: the old price {k!r} matches no model the old system saw" for k in keys if k not in used]
    return tuple(lines)


def _content(snap: Snapshot, plan: Plan, initial_credit: Decimal) -> dict[str, Any]:
    """Everything an import writes depends on: the same content means the same import."""
    return {"source": plan.source, "cutover": plan.cutover, "initial_credit": initial_credit, "nodes": plan.nodes,
            "users": [[u.name, u.balance] for u in snap.users],
            "recharges": [[r.id, r.user, r.amount, r.method, r.at] for r in snap.recharges],
            "prices": [list(p) for p in snap.prices], "mappings": [list(m) for m in plan.mappings],
            "lists": [[e.table, e.node, e.linux_user] for e in snap.lists], "models": list(snap.models),
            "usage": [[u.user, u.rows, u.cost, u.last_at] for u in snap.usage], "usage_max_id": snap.usage_max_id}
