"""The node registry (the seeds' node management): the inventory's nodes, their status and hardware.

The inventory is the source of truth for which nodes exist; a node that leaves it stays in the registry
(its samples and decisions refer to it) with ``in_inventory = false``. After each tick one batch
records every node's outcome, and for reachable nodes the hardware and GPU state their sample reported
(with each GPU's holders and activity, added to its hour: ``collector.nodes.gpuactivity``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.engine import Connection

from collector.charging.samples import Sample
from collector.nodes import gpuactivity
from collector.types import Node, Outcome
from control import nodes as node_edits
from control.presence import ControlTable

STATUS_OF = {Outcome.OK: "connected", Outcome.HOSTKEY_MISMATCH: "hostkey_mismatch"}


def status_of(outcome: Outcome) -> str:
    """Registry status for a tick outcome: connected, hostkey_mismatch, or failed."""
    return STATUS_OF.get(outcome, "failed")


@dataclass(frozen=True)
class NodeReport:
    """How one node fared in one tick, with its sample when it had one."""

    node: str
    outcome: Outcome
    attempted_at: datetime
    error: str | None = None
    sample: Sample | None = None


def sync_inventory(conn: Connection, nodes: Sequence[Node], edits: ControlTable) -> frozenset[str]:
    """Upsert every inventory node; flag the ones no longer in it. Returns the names of the listed ones.
    ``edits`` is the caller's probe of ``control.node_edit`` (kept across ticks: once present, no query).

    The listed flag, region and remarks are also admin fields (``PATCH /v1/nodes/{name}``, kept by
    ``control.nodes`` until this sync takes them in, first): the inventory overwrites one only when its own
    value for it changed since the last sync, so an admin's edit stands until ops edit that field in the
    inventory.
    """
    if edits.present(conn):
        _take_admin_edits(conn)
    listed = conn.execute(
        text(
            "INSERT INTO collector.node (name, address, port, local, region, remarks, listed,"
            " inventory_region, inventory_remarks, inventory_listed, in_inventory)"
            " SELECT n, a, p, l, r, m, s, r, m, s, true FROM unnest(CAST(:names AS text[]),"
            " CAST(:addresses AS text[]), CAST(:ports AS int[]), CAST(:locals AS boolean[]),"
            " CAST(:regions AS text[]), CAST(:remarks AS text[]), CAST(:listed AS boolean[])) AS i(n, a, p, l, r, m, s)"
            " ON CONFLICT (name) DO UPDATE SET address = EXCLUDED.address, port = EXCLUDED.port,"
            " local = EXCLUDED.local,"
            " region = CASE WHEN node.inventory_region = EXCLUDED.region THEN node.region ELSE EXCLUDED.region END,"
            " remarks = CASE WHEN node.inventory_remarks = EXCLUDED.remarks THEN node.remarks"
            " ELSE EXCLUDED.remarks END,"
            " listed = CASE WHEN node.inventory_listed = EXCLUDED.listed THEN node.listed ELSE EXCLUDED.listed END,"
            " inventory_region = EXCLUDED.region, inventory_remarks = EXCLUDED.remarks,"
            " inventory_listed = EXCLUDED.listed, in_inventory = true, updated_at = now()"
            " RETURNING name, listed"
        ),
        {
            "names": [n.name for n in nodes], "addresses": [n.address for n in nodes], "ports": [n.port for n in nodes],
            "locals": [n.local for n in nodes], "regions": [n.region for n in nodes],
            "remarks": [n.remarks for n in nodes], "listed": [n.listed for n in nodes],
        },
    )
    conn.execute(
        text("UPDATE collector.node SET in_inventory = false, updated_at = now()"
             " WHERE in_inventory AND NOT (name = ANY(CAST(:names AS text[])))"),
        {"names": [n.name for n in nodes]},
    )
    return frozenset(name for name, is_listed in listed if is_listed)


_APPLY_EDITS = """
    UPDATE collector.node AS n SET listed = coalesce(x.listed, n.listed), region = coalesce(x.region, n.region),
           remarks = coalesce(x.remarks, n.remarks), updated_at = now()
      FROM json_to_recordset(CAST(:rows AS json)) AS x(name text, listed boolean, region text, remarks text)
     WHERE n.name = x.name
"""


def _take_admin_edits(conn: Connection) -> None:
    """Write the admin edits made since the last sync into the registry, as the API once did at once; the
    inventory's values are laid over them afterwards by the usual rule."""
    edits = node_edits.by_node(node_edits.take(conn))
    if edits:
        rows = [{"name": node, **node_edits.lay_over({}, group)} for node, group in edits.items()]
        conn.execute(text(_APPLY_EDITS), {"rows": json.dumps(rows)})


def _text(value: str | None) -> str | None:
    """A string PostgreSQL can store: an error message may carry a NUL from a node's stderr."""
    return None if value is None else value.replace("\x00", "\\0")


# Rows travel as one JSON parameter per statement: psycopg adapts a text array element by element in Python,
# which cost 0.3-0.5 s of a 1,000-node tick's CPU (bench/controller.py); json.dumps does it in C.
_RECORD_NODES = """
    UPDATE collector.node AS n SET status = x.status, last_outcome = x.outcome, last_error = x.error,
           last_attempt_at = x.at, last_seen_at = CASE WHEN x.ok THEN x.at ELSE n.last_seen_at END,
           machine_id = coalesce(x.machine, n.machine_id), boot_id = coalesce(x.boot, n.boot_id),
           hardware = coalesce(x.hardware, n.hardware), updated_at = now()
      FROM json_to_recordset(CAST(:rows AS json))
           AS x(name text, status text, outcome text, error text, at timestamptz, ok boolean, machine text,
                boot text, hardware jsonb)
     WHERE n.name = x.name
"""
_RECORD_GPUS = """
    INSERT INTO collector.gpu (node, uuid, index, name, memory_total_bytes, state, seen_at)
    SELECT node, uuid, index, name, total, state, seen
      FROM json_to_recordset(CAST(:rows AS json))
           AS x(node text, uuid text, index int, name text, total bigint, state jsonb, seen timestamptz)
    ON CONFLICT (node, uuid) DO UPDATE SET index = EXCLUDED.index, name = EXCLUDED.name,
        memory_total_bytes = EXCLUDED.memory_total_bytes, state = EXCLUDED.state, seen_at = EXCLUDED.seen_at
"""


def record_tick(conn: Connection, reports: Sequence[NodeReport]) -> None:
    """Each node's status after a tick, in one round of statements."""
    if not reports:
        return
    nodes = []
    for r in reports:
        ok, sample = r.outcome is Outcome.OK, r.sample
        nodes.append({
            "name": r.node, "status": status_of(r.outcome), "outcome": r.outcome.value, "error": _text(r.error),
            "at": r.attempted_at.isoformat(), "ok": ok, "machine": sample.machine_id if sample else None,
            "boot": sample.boot_id if sample else None, "hardware": dict(sample.hardware) if sample else None,
        })
    conn.execute(text(_RECORD_NODES), {"rows": json.dumps(nodes, default=str)})
    # One row per (node, uuid): one statement may not upsert the same row twice.
    rows = list({(row["node"], row["uuid"]): row for report in reports if report.sample is not None
                 for row in gpuactivity.gpu_rows(report.node, report.sample, report.attempted_at)}.values())
    if rows:
        conn.execute(text(_RECORD_GPUS), {"rows": json.dumps(rows)})
        gpuactivity.record_hours(conn, rows)


@dataclass(frozen=True)
class RegistryRow:
    name: str
    address: str
    port: int
    region: str
    listed: bool
    in_inventory: bool
    status: str
    last_seen_at: datetime | None
    last_error: str | None
    remarks: str
    gpus: int


def list_nodes(conn: Connection) -> list[RegistryRow]:
    """The registry as admins see it: with the admin edits the next sync will take in laid over it."""
    pending = node_edits.by_node(node_edits.pending(conn)) if node_edits.installed(conn) else {}
    rows = conn.execute(
        text(
            "SELECT n.name, n.address, n.port, n.region, n.listed, n.in_inventory, n.status, n.last_seen_at,"
            " n.last_error, n.remarks, (SELECT count(*) FROM collector.gpu g WHERE g.node = n.name) AS gpus"
            " FROM collector.node n ORDER BY n.name"
        )
    )
    return [replace(RegistryRow(*r), **node_edits.lay_over({}, pending.get(r.name, ()))) for r in rows]
