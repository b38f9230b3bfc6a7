"""The node registry: an admin's edit survives the inventory sync until ops change that field; each tick
records every node's status and its GPUs' latest state."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy import create_engine, text

from collector.nodes.registry import NodeReport, record_tick, sync_inventory
from collector.types import Node, Outcome
from tests.collector.conftest import Database
from tests.collector.samples import GPU0, GPU1, sample

NODE = Node(name="gpu01", address="127.0.0.1", region="lab-a", remarks="rack 3")


def _fields(database: Database) -> tuple[str, str, bool]:
    engine = create_engine(database.app_url)
    with engine.connect() as conn:
        row = conn.execute(text("SELECT region, remarks, listed FROM collector.node WHERE name = 'gpu01'")).one()
    engine.dispose()
    return row.region, row.remarks, row.listed


def _sync(database: Database, node: Node) -> frozenset[str]:
    engine = create_engine(database.app_url)
    with engine.begin() as conn:
        listed = sync_inventory(conn, [node])
    engine.dispose()
    return listed


def _admin_edit(database: Database, **changes: object) -> None:
    # What PATCH /v1/nodes/{name} does, as the app role.
    engine = create_engine(database.app_url)
    with engine.begin() as conn:
        sets = ", ".join(f"{k} = :{k}" for k in changes)
        conn.execute(text(f"UPDATE collector.node SET {sets} WHERE name = 'gpu01'"), changes)  # noqa: S608
    engine.dispose()


def test_first_sync_takes_the_inventory(database: Database) -> None:
    assert _sync(database, NODE) == {"gpu01"}
    assert _fields(database) == ("lab-a", "rack 3", True)


def test_admin_edit_survives_syncs_with_an_unchanged_inventory(database: Database) -> None:
    _sync(database, NODE)
    _admin_edit(database, region="lab-b", listed=False)
    assert _sync(database, NODE) == frozenset()
    assert _sync(database, NODE) == frozenset()
    assert _fields(database) == ("lab-b", "rack 3", False)


def test_an_inventory_change_wins_for_that_field_only(database: Database) -> None:
    _sync(database, NODE)
    _admin_edit(database, region="lab-b", remarks="fan replaced")
    _sync(database, replace(NODE, region="lab-c"))
    assert _fields(database) == ("lab-c", "fan replaced", True)


def test_ops_unlisting_in_the_inventory_takes_effect(database: Database) -> None:
    _sync(database, NODE)
    assert _sync(database, replace(NODE, listed=False)) == frozenset()
    assert _fields(database)[2] is False


def test_a_tick_records_status_and_each_gpus_latest_state(database: Database) -> None:
    _sync(database, NODE)
    other = replace(NODE, name="gpu02")
    _sync(database, other)
    engine = create_engine(database.app_url)
    first, later = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 1, 0, 1, tzinfo=UTC)
    with engine.begin() as conn:
        record_tick(conn, [NodeReport("gpu01", Outcome.OK, first, sample=sample(60)),
                           NodeReport("gpu02", Outcome.NONZERO_EXIT, first, error="exit 1: bad\x00byte")])
    hot = sample(120)
    hot = replace(hot, gpus=(replace(hot.gpus[0], temperature_c=91), *hot.gpus[1:]))
    with engine.begin() as conn:
        record_tick(conn, [NodeReport("gpu01", Outcome.OK, later, sample=hot)])
        gpus = conn.execute(text("SELECT node, uuid, index, state ->> 'temperature_c', seen_at FROM collector.gpu"
                                 " ORDER BY index")).all()
        nodes = conn.execute(text("SELECT name, status, last_error, machine_id FROM collector.node"
                                  " ORDER BY name")).all()
    engine.dispose()
    assert [tuple(g) for g in gpus] == [("gpu01", GPU0, 0, "91", later), ("gpu01", GPU1, 1, "40", later)]
    assert [tuple(n) for n in nodes] == [("gpu01", "connected", None, "m1"),
                                         ("gpu02", "failed", "exit 1: bad\\0byte", None)]  # text keeps no NUL
