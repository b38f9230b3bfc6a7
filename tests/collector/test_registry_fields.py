"""The node registry: an admin's edit (made through control.nodes, taken in at the next sync) survives the
inventory sync until ops change that field; each tick records every node's status and its GPUs' latest state."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy import create_engine, text

from collector.nodes.registry import NodeReport, list_nodes, record_tick, sync_inventory
from collector.types import Node, Outcome
from control import nodes
from control.nodes import TABLE
from control.presence import ControlTable
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
        listed = sync_inventory(conn, [node], ControlTable(TABLE, "node edits"))
    engine.dispose()
    return listed


def _admin_edit(database: Database, **changes: object) -> None:
    # An edit the registry has taken in (control.nodes holds it until the next sync), as the app role.
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


# -- admin edits as the API now makes them: control.nodes rows the next sync takes in -----------------------------

def _edit_through_control(database: Database, **changes: object) -> None:
    engine = create_engine(database.app_url)
    with engine.begin() as conn:
        nodes.edit(conn, "gpu01", changes, "api:admin")
    engine.dispose()


def _pending(database: Database) -> list[dict[str, object]]:
    engine = create_engine(database.app_url)
    with engine.connect() as conn:
        edits = [dict(e.changes) for e in nodes.pending(conn)]
    engine.dispose()
    return edits


def test_an_edit_is_taken_at_the_next_sync_and_stands_until_ops_change_that_field(api_database: Database) -> None:
    _sync(api_database, NODE)
    _edit_through_control(api_database, region="lab-b", listed=False)
    _edit_through_control(api_database, region="lab-d")
    assert _fields(api_database) == ("lab-a", "rack 3", True)      # the registry itself: not yet
    assert _pending(api_database) == [{"region": "lab-b", "listed": False}, {"region": "lab-d"}]
    assert _sync(api_database, NODE) == frozenset()                 # the tick honours it: unlisted
    assert _fields(api_database) == ("lab-d", "rack 3", False) and _pending(api_database) == []
    assert _sync(api_database, NODE) == frozenset()
    _sync(api_database, replace(NODE, region="lab-c"))
    assert _fields(api_database) == ("lab-c", "rack 3", False)


def test_within_one_sync_interval_the_inventory_change_wins(api_database: Database) -> None:
    # As when the API wrote the registry at once: the sync after both saw the inventory's value change.
    _sync(api_database, NODE)
    _edit_through_control(api_database, remarks="fan replaced", region="lab-b")
    _sync(api_database, replace(NODE, region="lab-c"))
    assert _fields(api_database) == ("lab-c", "fan replaced", True)


def test_a_sync_that_rolls_back_leaves_the_edit_pending(api_database: Database) -> None:
    _sync(api_database, NODE)
    _edit_through_control(api_database, remarks="fan replaced")
    engine = create_engine(api_database.app_url)
    with engine.connect() as conn:
        sync_inventory(conn, [NODE], ControlTable(TABLE, "node edits"))
        conn.rollback()
        # The controller's `nodes list` shows the registry as the API does: with the pending edit over it.
        assert [(r.name, r.remarks) for r in list_nodes(conn)] == [("gpu01", "fan replaced")]
    engine.dispose()
    assert _pending(api_database) == [{"remarks": "fan replaced"}]
    _sync(api_database, NODE)
    assert _fields(api_database) == ("lab-a", "fan replaced", True)
