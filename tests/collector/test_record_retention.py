"""Decisions, ticks and unaccounted gaps are pruned after their retention, through the one function the app
role may call for it, which never removes what tells the controller whom it restricted."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DBAPIError

from collector.charging.retention import prune
from collector.config import ControllerConfig
from collector.enforcing.decisionlog import DecisionLog
from tests.collector.conftest import Database


@pytest.fixture
def app(database: Database) -> Iterator[Engine]:
    engine = create_engine(database.app_url)
    yield engine
    engine.dispose()


def seed(admin_url: str) -> None:
    engine = create_engine(admin_url)
    with engine.begin() as conn:
        old, new = 100, 1  # days ago
        tick = text("INSERT INTO collector.tick (controller, dry_run, started_at)"
                    " VALUES ('c', false, now() - make_interval(days => :age)) RETURNING id")
        old_tick = conn.execute(tick, {"age": old}).scalar_one()
        conn.execute(tick, {"age": old})
        rows = [  # (node, uid, verb, outcome, age)
            ("n1", 1001, "quota-set 1001 500000", "applied", old),   # superseded below: goes
            ("n1", 1001, "quota-set 1001 100000", "applied", old),   # n1/1001's latest quota verb: kept
            ("n1", 1001, "gpu-block 1001", "applied", old),          # its latest GPU verb: kept
            ("n1", 1001, "notify 1001", "applied", old),             # goes
            ("n1", 1002, "gpu-block 1002", "failed", old),           # failed: restricts nothing, goes
            ("n1", 1002, "notify 1002", "applied", new),             # recent: kept
        ]
        for node, uid, verb, outcome, age in rows:
            conn.execute(text(
                "INSERT INTO collector.decision (tick_id, at, node, uid, linux_user, verb, reason, dry_run, outcome)"
                " VALUES (:t, now() - make_interval(days => :age), :n, :u, 'someone', :v, 'r', false, :o)"
            ), {"t": old_tick, "age": age, "n": node, "u": uid, "v": verb, "o": outcome})
        for age in (old, new):
            conn.execute(text(
                "INSERT INTO collector.unaccounted (node, sample_id, reason, seconds, recorded_at)"
                " VALUES ('n1', 1, 'reboot', 60, now() - make_interval(days => :age))"
            ), {"age": age})
    engine.dispose()


def test_records_older_than_the_retention_go_except_the_restriction_memory(database: Database, app: Engine) -> None:
    seed(database.admin_url)
    before = DecisionLog(app).restricted()
    with app.begin() as conn:
        pruned = prune(conn, 30, 90)
    assert (pruned.decisions, pruned.ticks, pruned.unaccounted) == (3, 1, 1)
    with app.connect() as conn:
        left = [r.verb for r in conn.execute(text("SELECT verb FROM collector.decision ORDER BY id"))]
        assert left == ["quota-set 1001 100000", "gpu-block 1001", "notify 1002"]
        assert conn.execute(text("SELECT count(*) FROM collector.tick")).scalar() == 1  # the one decisions refer to
    assert DecisionLog(app).restricted() == before == {("n1", 1001): "someone"}
    with app.begin() as conn:
        assert prune(conn, 30, 90).decisions == 0  # a second prune finds nothing more


def test_the_app_role_prunes_only_through_the_function(database: Database, app: Engine) -> None:
    with app.connect() as conn, pytest.raises(DBAPIError, match="at least 1 day"):
        conn.execute(text("SELECT * FROM collector.prune_records(0)"))
    with app.connect() as conn, pytest.raises(DBAPIError, match="permission denied"):
        conn.execute(text("DELETE FROM collector.tick"))


def test_retention_is_configurable() -> None:
    env = {"GPULEDGER_DATABASE_URL": "postgresql+psycopg://x@127.0.0.1/db", "GPULEDGER_INVENTORY": "/dev/null"}
    assert ControllerConfig.from_env(env).decision_retention_days == 90
    config = ControllerConfig.from_env({**env, "GPULEDGER_DECISION_RETENTION_DAYS": "30",
                                        "GPULEDGER_CONNECTION_TEST_POLL_SECONDS": "0.5"})
    assert (config.decision_retention_days, config.connection_test_poll_s) == (30, 0.5)
