"""The collector chain runs after the ledger's, is idempotent, and gives the app role only what it needs."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import ProgrammingError

from collector.migrations import COLLECTOR_VERSION_TABLE, upgrade_collector
from ledger.migrate import current
from tests.collector.conftest import Database


def test_chain_at_head_and_rerun_is_a_no_op(database: Database) -> None:
    assert current(database.admin_url, COLLECTOR_VERSION_TABLE) == "c0004"
    upgrade_collector(database.admin_url)
    assert current(database.admin_url, COLLECTOR_VERSION_TABLE) == "c0004"


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
