"""``gpuledger queue`` (docs/queue.md, "API, CLI and console") run as the command line runs it, against a
migrated PostgreSQL with the queue's real tick in between: list and show, boost, cancel, extend and approve
(each one ``control.queue_action`` row with actor ``cli:LOGIN`` and its reason), the caps of the settings
version in force, the idle-held report, and the exit codes of bad input and of no database."""

from __future__ import annotations

import json
import pwd
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text

from control import versions
from control.queue import admin, store, tick
from control.queue.intake import Catalog
from control.queue.records import GpuFact, GpuRef, Policy
from gpuledger.cli import main
from tests.collector.conftest import Database

GPU = GpuRef("gpu01", 0, "a100")
NOBODY = pwd.getpwnam("nobody")


@pytest.fixture
def engine(api_database: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.setenv("GPULEDGER_DATABASE_URL", api_database.app_url)
    # The tests run as root: under sudo the actor is the account sudo ran for, by its uid.
    monkeypatch.setenv("SUDO_UID", str(NOBODY.pw_uid))
    engine = create_engine(api_database.app_url)
    yield engine
    engine.dispose()


def _file(engine: Engine, user: str) -> int:
    with engine.begin() as conn:
        request, _ = admin.request(conn, user=user, project=None, body={"count": 1}, catalog=Catalog.of([GPU]),
                                   policy=Policy(), now=datetime.now(UTC))
    return request.id


def _tick(engine: Engine, busy: str | None = None) -> None:
    with engine.begin() as conn:
        tick.run(conn, (), [GpuFact(GPU, frozenset({busy} if busy else ()))], {}, Policy(), datetime.now(UTC),
                 usage={})


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    assert main(["queue", *argv, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def _actions(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT request_id, action, actor, reason FROM control.queue_action ORDER BY id"))]


def test_list_show_and_every_action_recorded_with_the_cli_actor(engine: Engine,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    a, b = _file(engine, "alice"), _file(engine, "bob")
    _tick(engine)                               # alice is offered the one GPU, bob waits behind her
    listed = _json(capsys, "list")
    assert [(q["id"], q["user"], q["state"], q["gpus"], q["position"]) for q in listed] == [
        (a, "alice", "offered", "gpu01:0", None), (b, "bob", "queued", None, 1)]
    assert [q["id"] for q in _json(capsys, "list", "--state", "queued")] == [b]
    assert [q["id"] for q in _json(capsys, "list", "--user", "alice")] == [a]

    actor = f"cli:{NOBODY.pw_name}"
    assert main(["queue", "boost", str(b), "12", "--reason", "deadline", "--key", "k1"]) == 0
    assert f"boost of request {b} recorded" in capsys.readouterr().out
    assert main(["queue", "boost", str(b), "12", "--reason", "deadline", "--key", "k1"]) == 0  # a retry
    assert "already recorded (nothing changed)" in capsys.readouterr().out
    assert main(["queue", "approve", str(a), "--reason", "runs in a container"]) == 0
    capsys.readouterr()
    # bob waits for alice's GPU: no extension
    assert main(["queue", "extend", str(a), "2", "--reason", "long run"]) == 2
    assert "1 request(s) wait for its GPUs" in capsys.readouterr().err
    assert main(["queue", "cancel", str(b), "--reason", "asked twice"]) == 0
    capsys.readouterr()
    before = _json(capsys, "show", str(a))["ends"]
    assert main(["queue", "extend", str(a), "2", "--reason", "long run"]) == 0
    capsys.readouterr()
    shown = _json(capsys, "show", str(a))
    assert datetime.fromisoformat(shown["ends"]) - datetime.fromisoformat(before) == timedelta(hours=2)
    assert (shown["state"], [x["action"] for x in shown["actions"]]) == ("granted", ["approve", "extend"])
    assert _actions(engine) == [(b, "boost", actor, "deadline"), (a, "approve", actor, "runs in a container"),
                                (b, "cancel", actor, "asked twice"), (a, "extend", actor, "long run")]
    with engine.connect() as conn:
        assert store.get(conn, b).reason == f"cancelled by {actor}: asked twice"  # type: ignore[union-attr]

    assert main(["queue", "show", str(a)]) == 0   # the table: the request's fields, then its actions
    table = capsys.readouterr().out
    assert "state          granted" in table and "approve" in table and actor in table


def test_the_boost_cap_is_the_settings_version_in_force(engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    rid = _file(engine, "alice")
    assert main(["queue", "boost", str(rid), "100", "--reason", "x"]) == 0    # the default cap: 168 h
    with engine.begin() as conn:
        versions.append(conn, {"queue_admin_boost_cap_hours": 10}, "small boosts", "admin")
    assert main(["queue", "boost", str(rid), "11", "--reason", "x"]) == 2
    assert "outside 0 to 10 h" in capsys.readouterr().err
    assert [x[1] for x in _actions(engine)] == ["boost"]                     # the refusal recorded nothing
    assert _json(capsys, "show", str(rid))["boost_hours"] == 100


def test_the_weekly_idle_report(engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    rid = _file(engine, "alice")
    _tick(engine)
    _tick(engine, busy="alice")                 # her process on the offered GPU: granted
    since = datetime.now(UTC) - timedelta(minutes=90)
    with engine.begin() as conn:
        store.idle_update(conn, [(rid, GPU.node, GPU.index, since, 1)], now=datetime.now(UTC))
    [row] = _json(capsys, "idle-report")
    start = datetime.fromisoformat(row["from"])
    assert datetime.fromisoformat(row["to"]) - start == timedelta(days=7)
    # 90 idle minutes so far (fewer when this week began less than 90 minutes ago)
    assert row["user"] == "alice" and (row["idle_gpu_hours"] == "1.50" or since < start)
    last_week = _json(capsys, "idle-report", "--week", (start - timedelta(days=3)).date().isoformat())
    assert last_week == [] or since < start


def test_bad_input_and_no_database(engine: Engine, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["queue", "show", "999"]) == 2
    assert "no live GPU request 999" in capsys.readouterr().err
    assert main(["queue", "cancel", "999", "--reason", "x"]) == 2
    with pytest.raises(SystemExit) as caught:    # argparse: 2 decimals at most, and a reason
        main(["queue", "extend", "1", "1.234", "--reason", "x"])
    assert caught.value.code == 2
    with pytest.raises(SystemExit):
        main(["queue", "cancel", "1", "--reason", " "])
    monkeypatch.setenv("GPULEDGER_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    assert main(["queue", "list"]) == 3
