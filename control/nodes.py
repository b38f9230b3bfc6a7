"""Admin edits of a node's registry fields (PATCH /v1/nodes/{name}: ``listed``, ``region``, ``remarks``).

The registry is the collector's (``collector.node``), and the API may not write it. So an edit is a row of
``control.node_edit``, appended by :func:`edit`, and the registry takes it in at the controller's next
inventory sync (:func:`take`, in the sync's transaction, before the inventory's values are laid over:
``collector/nodes/registry.py``). There the existing rule decides, unchanged: the inventory overwrites a field
only when its own value for it changed since the last sync, so an admin's edit stands until ops edit that
same field in the inventory, and within one sync interval the inventory's change wins, as it did when the
API wrote the registry at once.

Until the sync has taken an edit it is *pending*: whoever shows the registry lays the pending edits over it
(:func:`lay_over`), so a PATCH's answer and every read after it show the new value at once, as before.

An edit may carry the idempotency key of the request or form that made it (control0005): a retry or a double
submit with the key finds the stored edit (:func:`replayed`) instead of appending a second one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

FIELDS = ("listed", "region", "remarks")
TABLE = "control.node_edit"
# Two-key advisory locks (this namespace, the node's hash) live apart from our one-key ones (writer,
# migration and settings locks).
_LOCK_NAMESPACE = 0x676C6E65
_COLUMNS = "id, node, listed, region, remarks, actor, at, idempotency_key"


@dataclass(frozen=True)
class NodeEdit:
    """One edit: ``changes`` holds the fields it set, by name (some of ``FIELDS``)."""

    id: int
    node: str
    changes: Mapping[str, Any]
    actor: str
    at: datetime
    key: str | None = None


class KeyReused(Exception):
    """The idempotency key is stored with another edit (another node or other fields): the request is refused,
    since storing it would make the key name two different edits."""

    def __init__(self, key: str, edit: NodeEdit) -> None:
        super().__init__(f"idempotency key {key!r} was already used for another edit (#{edit.id} of {edit.node})")
        self.key = key
        self.edit = edit


def _edit(row: Sequence[Any]) -> NodeEdit:
    changes: dict[str, Any] = {k: v for k, v in zip(FIELDS, row[2:5], strict=True) if v is not None}
    return NodeEdit(id=int(row[0]), node=str(row[1]), changes=MappingProxyType(changes), actor=str(row[5]), at=row[6],
                    key=row[7])


def lock(conn: Connection, node: str) -> None:
    """Serialise edits of ``node`` for the rest of the transaction, so the state an edit is made over (and
    audited as "before") is not changed by another edit meanwhile."""
    conn.execute(text("SELECT pg_advisory_xact_lock(:ns, hashtext(:n))"), {"ns": _LOCK_NAMESPACE, "n": node})


def replayed(conn: Connection, key: str, node: str, changes: Mapping[str, Any]) -> NodeEdit | None:
    """The edit stored under ``key`` when it is this same edit of ``node`` (a replay: store nothing, audit
    nothing), None when the key is new; :class:`KeyReused` when the key names another edit. Call it under
    :func:`lock`, so a concurrent replay waits for the first request's commit and then finds its edit."""
    row = conn.execute(text(f"SELECT {_COLUMNS} FROM control.node_edit WHERE idempotency_key = :k"),  # noqa: S608 (constant column list)
                       {"k": key}).one_or_none()
    if row is None:
        return None
    stored = _edit(row)
    if stored.node != node or dict(stored.changes) != dict(changes):
        raise KeyReused(key, stored)
    return stored


def edit(conn: Connection, node: str, changes: Mapping[str, Any], actor: str,
         key: str | None = None) -> NodeEdit | None:
    """Append an edit of ``node``'s fields (None when ``changes`` is empty: nothing to store), under the
    idempotency ``key`` when given (check :func:`replayed` first). The caller checks that the registry has the
    node; ``changes`` holds only names of ``FIELDS``, none of them None."""
    unknown = set(changes) - set(FIELDS)
    if unknown or any(v is None for v in changes.values()):
        raise ValueError(f"node edit: only {', '.join(FIELDS)} with values, got {dict(changes)!r}")
    if not changes:
        return None
    # A key taken meanwhile by an edit of another node (whose lock we do not hold) inserts nothing here.
    row = conn.execute(text(
        "INSERT INTO control.node_edit (node, listed, region, remarks, actor, idempotency_key)"  # noqa: S608 (constant column list)
        " VALUES (:node, :listed, :region, :remarks, :actor, :key) ON CONFLICT (idempotency_key) DO NOTHING"
        f" RETURNING {_COLUMNS}"),
        {"node": node, "actor": actor, "key": key, **{k: changes.get(k) for k in FIELDS}}).one_or_none()
    if row is None:
        assert key is not None  # only a key can conflict
        other = replayed(conn, key, node, changes)
        assert other is not None
        return other
    return _edit(row)


def pending(conn: Connection, nodes: Sequence[str] | None = None) -> list[NodeEdit]:
    """Edits the registry has not taken yet (of ``nodes`` only, when given), oldest first."""
    where = "applied_at IS NULL" + ("" if nodes is None else " AND node = ANY(:nodes)")
    rows = conn.execute(text(f"SELECT {_COLUMNS} FROM control.node_edit WHERE {where} ORDER BY id"),  # noqa: S608 (constant column list and clauses)
                        {"nodes": list(nodes or ())})
    return [_edit(r) for r in rows]


def installed(conn: Connection) -> bool:
    """Whether the control chain has created the edits' table (a controller-only database has none)."""
    return bool(conn.execute(text("SELECT to_regclass(:t) IS NOT NULL"), {"t": TABLE}).scalar())


def take(conn: Connection) -> list[NodeEdit]:
    """The pending edits, oldest first, marked taken: for the registry to apply in this same transaction (a
    rollback leaves them pending). Edits committed meanwhile wait for the next call."""
    rows = conn.execute(text("UPDATE control.node_edit SET applied_at = now() WHERE applied_at IS NULL"  # noqa: S608 (constant column list)
                             f" RETURNING {_COLUMNS}"))
    return sorted(map(_edit, rows), key=lambda e: e.id)


def lay_over(fields: Mapping[str, Any], edits: Iterable[NodeEdit]) -> dict[str, Any]:
    """``fields`` (one node's, by name) with ``edits`` of that node applied in order: the newest edit of a
    field wins."""
    out = dict(fields)
    for e in sorted(edits, key=lambda e: e.id):
        out.update(e.changes)
    return out


def by_node(edits: Iterable[NodeEdit]) -> dict[str, list[NodeEdit]]:
    """``edits`` grouped by node, each group oldest first."""
    out: dict[str, list[NodeEdit]] = {}
    for e in sorted(edits, key=lambda e: e.id):
        out.setdefault(e.node, []).append(e)
    return out
