"""The collector chain runs after the ledger's, is idempotent, and gives the app role only what it needs; the
control chain takes the api's admin tables over with their rows."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.pool import NullPool

from collector.config import TierPolicy
from collector.enforcing.admin import AdminReader
from collector.enforcing.rules import Rules
from collector.migrations import COLLECTOR_MIGRATIONS, COLLECTOR_VERSION_TABLE, upgrade_collector
from control import connections, overrides, versions
from ledger.config import LedgerConfig
from ledger.db import create_app_engine
from ledger.embedded import EmbeddedPostgres
from ledger.environ import Secret
from ledger.migrate import current, upgrade
from ledger.money import MICRO
from ledger.service import Ledger
from ledger.tiers import Thresholds
from tests.collector.conftest import Database, migrated_database

ROOT = Path(__file__).resolve().parents[2]


def test_chain_at_head_and_rerun_is_a_no_op(database: Database) -> None:
    assert current(database.admin_url, COLLECTOR_VERSION_TABLE) == "c0006"
    upgrade_collector(database.admin_url)
    assert current(database.admin_url, COLLECTOR_VERSION_TABLE) == "c0006"


def test_app_role_cannot_rewrite_decisions(database: Database) -> None:
    engine = create_engine(database.app_url)
    with engine.connect() as connection:
        connection.execute(
            text(
                "INSERT INTO collector.decision (node, verb, reason, dry_run, outcome)"
                " VALUES ('n', 'v', 'r', false, 'planned')"
            )
        )
        connection.execute(text("UPDATE collector.decision SET outcome = 'applied'"))
        with pytest.raises(ProgrammingError, match="permission denied"):
            connection.execute(text("UPDATE collector.decision SET verb = 'other'"))
        connection.rollback()
        with pytest.raises(ProgrammingError, match="permission denied"):
            connection.execute(text("DELETE FROM collector.decision"))
    engine.dispose()


_MOVED = ("settings_version", "enforcement_override", "connection_test")
_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")


def _privileges(connection: Connection, schema: str) -> dict[tuple[str, str, str], bool]:
    """Which table privileges (any column's, for UPDATE) the app and auditor roles hold on the moved tables."""
    column = " OR has_any_column_privilege(:r, :t, :p)"
    check = {p: "has_table_privilege(:r, :t, :p)" + ("" if p == "DELETE" else column)  # DELETE has no column form
             for p in _PRIVILEGES}
    return {(table, role, p): bool(connection.execute(text(f"SELECT {check[p]}"),
                                                      {"r": role, "t": f"{schema}.{table}", "p": p}).scalar())
            for table in _MOVED for role in ("gpuledger_app", "gpuledger_auditor") for p in _PRIVILEGES}


def test_control_0001_moves_the_api_tables_with_their_rows_ids_and_grants(pg_cluster: EmbeddedPostgres) -> None:
    """A database at the heads before the control chain (collector c0003, api api0004) with rows in the three
    api tables; after every chain's upgrade the rows are control's, with their ids, and the controller and the
    API's functions read them."""
    from gpuledger.main import upgrade_all

    database = migrated_database(pg_cluster, "glc_control_move")
    upgrade(database.admin_url, COLLECTOR_MIGRATIONS, COLLECTOR_VERSION_TABLE, "c0003")
    upgrade(database.admin_url, ROOT / "api" / "migrations", "api_alembic_version", "api0004")
    admin = create_engine(database.admin_url, poolclass=NullPool)
    with admin.begin() as connection:
        before = _privileges(connection, "api")
    app_may = {(t, p) for t, role, p in before if role == "gpuledger_app" and before[(t, role, p)]}
    assert ("connection_test", "DELETE") in app_may and ("settings_version", "UPDATE") not in app_may
    ledger_engine = create_app_engine(database.app_url)
    Ledger(ledger_engine, LedgerConfig(database_url=Secret(database.app_url))).add_user("erin", actor="test")
    ledger_engine.dispose()
    with admin.begin() as connection:
        # Ids past 1, as on a database in use: the move must keep them, not renumber.
        for table in _MOVED:
            connection.execute(text(f"SELECT setval(pg_get_serial_sequence('api.{table}', 'id'), 40)"))
        version = connection.execute(text(
            "INSERT INTO api.settings_version (settings, reason, actor) VALUES ('{\"kill_grace_seconds\": 120}',"
            " 'before the move', 'admin') RETURNING id")).scalar_one()
        override = connection.execute(text(
            "INSERT INTO api.enforcement_override (billing_user, action, reason, actor)"
            " VALUES ('erin', 'exempt', 'before the move', 'admin') RETURNING id")).scalar_one()
        test_id = connection.execute(text(
            "INSERT INTO api.connection_test (node, requested_by, request_id) VALUES ('gpu01', 'api:admin', 'r1')"
            " RETURNING id")).scalar_one()
    assert (version, override, test_id) == (41, 41, 41)

    upgrade_all(database.admin_url, out=lambda _: None)
    assert current(database.admin_url, "control_alembic_version") == "control0009"
    with admin.begin() as connection:
        assert [connection.execute(text("SELECT to_regclass(:t)"), {"t": f"api.{t}"}).scalar() for t in _MOVED] == [
            None, None, None]
        assert _privileges(connection, "control") == before
    admin.dispose()

    app = create_engine(database.app_url, poolclass=NullPool)
    defaults = Rules(Thresholds(warning=100 * MICRO, limited=10 * MICRO, blocked=0), TierPolicy(kill_grace_s=600),
                     dry_run=False)
    with app.begin() as connection:
        state = AdminReader().read(connection, defaults)          # the controller
        assert (state.rules.settings_version, state.rules.policy.kill_grace_s) == (41, 120)
        assert {u: (o.id, o.action) for u, o in state.overrides.items()} == {"erin": (41, "exempt")}
        newest = versions.newest(connection)                      # what the API reads
        assert newest is not None and (newest.id, newest.reason) == (41, "before the move")
        assert [(p.override.id, p.override.user, p.actor) for p in overrides.recent(connection)] == [
            (41, "erin", "admin")]
        assert connections.claim(connection, 600, 20) == [(41, "gpu01")]
        # New rows continue the moved sequences.
        assert overrides.add(connection, "erin", "apply", "after the move", None, "admin").override.id == 42
    app.dispose()
