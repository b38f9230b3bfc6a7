"""The machines pages over HTTP (the browser test drives the same pages): who may open and post them, CSRF,
the registry's fields and filters, the node edit and "test connection now" forms taking the API's path, and the
overview's figures against the ledger's rollup and the collector's samples."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from control import connections
from ledger import rollup
from ledger.service import Ledger
from tests.api.conftest import ApiDatabase, Tokens, bearer
from tests.console.conftest import csrf_of, log_in

HARDWARE = {"cpu": {"model": "AMD EPYC 7763", "physical_cores": 64, "logical_cpus": 128},
            "memory": {"total_bytes": 512 * 2**30}, "disks": [{"mountpoint": "/scratch", "total_bytes": 4 * 2**40}],
            "nvidia": {"driver_version": "550.54"}}


@dataclass(frozen=True)
class Machines:
    nodes: tuple[str, ...]
    now: datetime
    hour: datetime   # the hour in progress when the fixture wrote its rows, which the pages count back from


def _now_clear_of_the_hour() -> datetime:
    """Now, at least a minute before the next hour: the pages count back from the hour in progress, so rows
    written for one hour must be read in that same hour (a module-level "now" went stale when the suite's
    collection and the test straddled an hour)."""
    now = datetime.now(UTC)
    left = 3600 - (now.minute * 60 + now.second)
    if left < 60:
        time.sleep(left + 1)
        now = datetime.now(UTC)
    return now


@pytest.fixture
def machines(api_db: ApiDatabase) -> Machines:
    """gpu01 (connected, two A100s: one busy for alice, one held idle by bob; a day of hourly activity), gpu02
    (failed, stale) and gpu03 (unlisted)."""
    now = _now_clear_of_the_hour()
    hour = now.replace(minute=0, second=0, microsecond=0)
    engine = create_engine(api_db.admin_url, poolclass=NullPool)
    with engine.begin() as conn:
        for name, region, status, seen, listed in (("gpu01", "east", "connected", now, True),
                                                   ("gpu02", "west", "failed", now - timedelta(hours=3), True),
                                                   ("gpu03", "west", "unknown", None, False)):
            conn.execute(text(
                "INSERT INTO collector.node (name, address, port, region, listed, status, last_seen_at, last_error,"
                " hardware) VALUES (:n, '10.0.0.' || right(:n, 1), 2222, :r, :l, :s, :seen, :err,"
                " CAST(:hw AS jsonb))"),
                {"n": name, "r": region, "l": listed, "s": status, "seen": seen,
                 "err": "connection refused" if status == "failed" else None, "hw": json.dumps(HARDWARE)})
        for index, activity, holders, util in ((0, "busy", [{"uid": 1001, "user": "alice",
                                                             "memory_used_bytes": 30 * 2**30}], 87),
                                               (1, "idle_held", [{"uid": 1002, "user": "bob",
                                                                  "memory_used_bytes": 2**30}], 0)):
            state = {"utilization_percent": util, "memory_used_bytes": holders[0]["memory_used_bytes"],
                     "holders": holders, "activity": activity}
            conn.execute(text("INSERT INTO collector.gpu (node, uuid, index, name, memory_total_bytes, state, seen_at)"
                              " VALUES ('gpu01', :u, :i, 'A100', :m, CAST(:s AS jsonb), :t)"),
                         {"u": f"GPU-{index}", "i": index, "m": 80 * 2**30, "s": json.dumps(state), "t": now})
            for h in range(24):
                busy = activity == "busy"
                conn.execute(text(
                    "INSERT INTO collector.gpu_hourly (hour, node, uuid, model, samples, utilization_samples,"
                    " utilization_sum, held_samples, idle_held_samples, holders) VALUES (:h, 'gpu01', :u, 'A100',"
                    " 60, 60, :sum, :held, :idle, :who)"),
                    {"h": hour - timedelta(hours=h), "u": f"GPU-{index}",
                     "sum": 60 * (util - 2 * (h % 12) if busy else 0), "held": 60 if busy else 40,
                     "idle": 0 if busy else 40, "who": [holders[0]["user"]]})
    engine.dispose()
    return Machines(("gpu01", "gpu02", "gpu03"), now, hour)


def _more_nodes(api_db: ApiDatabase, prefix: str, n: int, *, region: str, status: str) -> None:
    """``n`` listed registry rows PREFIX001... (never seen) besides the fixture's."""
    engine = create_engine(api_db.admin_url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO collector.node (name, address, port, region, listed, status)"
                          " SELECT :p || lpad(i::text, 3, '0'), '10.9.0.1', 22, :r, true, :s"
                          " FROM generate_series(1, :n) AS i"), {"p": prefix, "n": n, "r": region, "s": status})
    engine.dispose()


def _rows(html: str, table: str) -> list[list[str]]:
    body = html.split(f'id="{table}"', 1)[1].split("</table>", 1)[0]
    return [[re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)]
            for r in re.findall(r"<tr>(.*?)</tr>", body.split("<tbody>", 1)[1], re.S)]


def test_overview_is_the_landing_page_with_the_collectors_shares(base_url: str, issued: Tokens,
                                                                   machines: Machines) -> None:
    for token in (issued.admin, issued.operator, issued.auditor):
        with log_in(base_url, token) as c:
            page = c.get("/?bucket=hour")
            assert page.status_code == 200
            states = _rows(page.text, "gpu-states")
            # 24 hours back from the one in progress: 2 GPUs x 60 samples each hour; bob's holds 40 idle, 20 free.
            assert len(states) == 24
            assert all(r[1:3] == ["A100", "120"] for r in states)
            assert {tuple(r[3:]) for r in states} == {("50 %", "33.3 %", "16.7 %")}
            assert _rows(page.text, "idle-holders") == [["bob", "bob@gpu01", str(24 * 40)]]
            troubled = page.text.split('id="troubled"', 1)[1].split("</section>", 1)[0]
            # gpu02 failed and is stale; gpu03 is not listed; gpu01 answered now.
            assert "/nodes/gpu02" in troubled and "gpu03" not in troubled and "gpu01" not in troubled
    with log_in(base_url, issued.admin) as c:
        assert c.get("/?bucket=year").status_code == 422


def test_idle_holding_is_ranked_per_billing_user_through_the_mappings(base_url: str, issued: Tokens, ledger: Ledger,
                                                                       api_db: ApiDatabase,
                                                                       machines: Machines) -> None:
    """bob2 on gpu01 is mapped to bob: their idle samples add up under bob; a holder no mapping or billing user
    answers to is ranked on its own, as not mapped."""
    ledger.map_linux_user("gpu01", "bob2", "bob", actor="test")
    engine = create_engine(api_db.admin_url, poolclass=NullPool)
    with engine.begin() as conn:
        for uuid, who, idle in (("GPU-2", "bob2", 7), ("GPU-3", "ghost", 50)):
            conn.execute(text(
                "INSERT INTO collector.gpu_hourly (hour, node, uuid, model, samples, utilization_samples,"
                " utilization_sum, held_samples, idle_held_samples, holders) VALUES (:h, 'gpu01', :u, 'A100',"
                " 60, 60, 0, :idle, :idle, :who)"), {"h": machines.hour, "u": uuid, "idle": idle, "who": [who]})
    engine.dispose()
    with log_in(base_url, issued.admin) as c:
        page = c.get("/?bucket=hour")
    assert _rows(page.text, "idle-holders") == [["bob", "bob@gpu01, bob2@gpu01", str(24 * 40 + 7)],
                                                 ["not mapped", "ghost@gpu01", "50"]]


def test_overview_lists_the_first_troubled_nodes_and_counts_them_all(base_url: str, issued: Tokens,
                                                                     api_db: ApiDatabase,
                                                                     machines: Machines) -> None:
    from api.console.pages.overview import TROUBLED
    _more_nodes(api_db, "down", TROUBLED + 5, region="", status="failed")
    with log_in(base_url, issued.admin) as c:
        page = c.get("/").text
    troubled = page.split('id="troubled"', 1)[1].split("</section>", 1)[0]
    shown = re.findall(r'href="/nodes/([^"]+)"', troubled)
    assert shown == sorted([f"down{i:03d}" for i in range(1, TROUBLED + 6)] + ["gpu02"])[:TROUBLED]
    assert f"The first {TROUBLED} of {TROUBLED + 6} by name" in troubled and "/nodes?sort=last_seen_at" in troubled


def test_overview_money_and_top_users_are_the_rollups(base_url: str, issued: Tokens, seeded: Ledger) -> None:
    whole = _now_clear_of_the_hour().replace(minute=0, second=0, microsecond=0)
    with log_in(base_url, issued.admin) as c:
        page = c.get("/?bucket=month").text
    with seeded.engine.connect() as conn:
        charged = rollup.charged_per_day(conn, start=whole - timedelta(days=14), end=whole,
                                         tz=seeded.config.timezone)
        top = rollup.top_users(conn, start=whole - timedelta(days=366), end=whole, resource="gpu")
    assert charged and re.findall(r'data-micro="(-?\d+)"', page) == [str(d.amount) for d in charged]
    assert [r[0] for r in _rows(page, "top-users")] == [u.user for u in top] == ["alice"]


def test_registry_lists_every_field_filters_and_sorts(base_url: str, issued: Tokens, machines: Machines) -> None:
    with log_in(base_url, issued.operator) as c:
        rows = _rows(c.get("/nodes").text, "nodes")
        assert [r[0] for r in rows] == ["gpu01", "gpu02", "gpu03"]
        gpu01 = rows[0]
        assert gpu01[1:3] == ["east", "connected"] and gpu01[4] == "10.0.0.1:2222"
        assert gpu01[5] == "AMD EPYC 7763, 64 cores" and gpu01[6] == "512 GiB" and gpu01[7] == "/scratch 4,096 GiB"
        assert gpu01[8] == "2 × A100 80 GiB" and gpu01[9] == "yes"
        assert rows[1][10] == "connection refused" and rows[2][9] == "no" and rows[2][3] == "never"
        assert [r[0] for r in _rows(c.get("/nodes?q=west").text, "nodes")] == ["gpu02", "gpu03"]
        assert [r[0] for r in _rows(c.get("/nodes?status=failed").text, "nodes")] == ["gpu02"]
        assert [r[0] for r in _rows(c.get("/nodes?sort=last_seen_at").text, "nodes")] == ["gpu03", "gpu02", "gpu01"]
        assert [r[0] for r in _rows(c.get("/nodes?sort=gpus").text, "nodes")][0] == "gpu01"
        assert c.get("/nodes?sort=ram").status_code == 422


def test_registry_pages_keep_the_filter_and_sort_and_cover_every_node_once(base_url: str, issued: Tokens,
                                                                          api_db: ApiDatabase,
                                                                          machines: Machines) -> None:
    from api.console.pages.nodes import NODE_ROWS
    _more_nodes(api_db, "bulk", 2 * NODE_ROWS + 50, region="south", status="unknown")
    with log_in(base_url, issued.operator) as c:
        first = c.get("/nodes", params={"q": "south", "sort": "name"}).text
        assert len(_rows(first, "nodes")) == NODE_ROWS and f"1-{NODE_ROWS} of {2 * NODE_ROWS + 50}" in first
        seen, page = [], first
        while True:
            seen += [r[0] for r in _rows(page, "nodes")]
            link = re.search(r'href="(/nodes\?[^"]*)" rel="next"', page)
            if link is None:
                break
            assert "q=south" in link.group(1) and "sort=name" in link.group(1)
            page = c.get(link.group(1).replace("&amp;", "&")).text
        assert seen == [f"bulk{i:03d}" for i in range(1, 2 * NODE_ROWS + 51)]
        last = c.get("/nodes", params={"q": "south", "page": 99}).text   # past the end: the last page
        assert [r[0] for r in _rows(last, "nodes")] == seen[2 * NODE_ROWS:]
        assert 'rel="prev"' in last and "q=south" in last
        assert c.get("/nodes", params={"page": 0}).status_code == 422


def test_node_detail_shows_each_gpu_its_users_and_history(base_url: str, issued: Tokens,
                                                           machines: Machines) -> None:
    with log_in(base_url, issued.auditor) as c:
        page = c.get("/nodes/gpu01")
        assert page.status_code == 200
        gpus = _rows(page.text, "gpus")
        assert [(r[0], r[1], r[3], r[4], r[5]) for r in gpus] == [("0", "A100", "87 %", "in use", "alice"),
                                                                  ("1", "A100", "0 %", "held but idle", "bob")]
        assert page.text.count("<polyline") == 2
        # An auditor reads; the forms are for admins and operators.
        assert 'id="edit-form"' not in page.text and 'id="test-form"' not in page.text
        assert c.get("/nodes/nope").status_code == 404


def test_edit_takes_the_api_path_and_is_refused_without_csrf_or_role(base_url: str, client: httpx.Client,
                                                                      issued: Tokens, machines: Machines,
                                                                      api_db: ApiDatabase) -> None:
    with log_in(base_url, issued.operator) as c:
        page = c.get("/nodes/gpu02")
        assert 'id="edit-form"' in page.text
        key = re.search(r'name="idempotency_key" value="([^"]+)"', page.text)
        assert key is not None
        form = {"region": "north", "remarks": "rack 7", "idempotency_key": key.group(1)}  # listed unchecked: false
        assert c.post("/nodes/gpu02/edit", data=form).status_code == 403     # no CSRF field
        for _ in range(2):   # a double submit stores one edit
            done = c.post("/nodes/gpu02/edit", data={**form, "csrf": csrf_of(page.text)})
            assert (done.status_code, done.headers["location"]) == (303, "/nodes/gpu02")
        keyless = c.post("/nodes/gpu02/edit", data={"region": "south", "csrf": csrf_of(page.text)})
        assert keyless.status_code == 400
        too_long = c.post("/nodes/gpu02/edit", data={"region": "x" * 101, "csrf": csrf_of(page.text),
                                                     "idempotency_key": "k2"})
        assert too_long.status_code == 422
    with create_engine(api_db.admin_url, poolclass=NullPool).connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM control.node_edit WHERE node = 'gpu02'")).scalar() == 1
    node = client.get("/v1/nodes/gpu02", headers=bearer(issued.admin)).json()
    assert (node["region"], node["remarks"], node["listed"]) == ("north", "rack 7", False)
    with log_in(base_url, issued.auditor) as c:
        page = c.get("/nodes/gpu02")
        assert c.post("/nodes/gpu02/edit", data={**form, "csrf": csrf_of(page.text)}).status_code == 403


def test_connection_test_form_queues_one_and_its_page_follows_it(base_url: str, issued: Tokens, ledger: Ledger,
                                                                  machines: Machines) -> None:
    with log_in(base_url, issued.admin) as c:
        page = c.get("/nodes/gpu01")
        asked = c.post("/nodes/gpu01/test", data={"csrf": csrf_of(page.text)})
        assert asked.status_code == 303
        test_id = int(asked.headers["location"].rsplit("/", 1)[1])
        pending = c.get(asked.headers["location"]).text
        assert "waiting for the controller" in pending and 'hx-trigger="every 2s"' in pending
        assert f'href="/connection-tests/{test_id}"' in pending   # the refresh link, without JavaScript
        with ledger.engine.begin() as conn:
            assert connections.claim(conn, 60, 10) == [(test_id, "gpu01")]
            connections.finish(conn, test_id, "ok", {"gpus": 2})
        done = c.get(asked.headers["location"]).text
        assert 'id="test-outcome">ok<' in done and "hx-trigger" not in done
        assert c.post("/nodes/nope/test", data={"csrf": csrf_of(page.text)}).status_code == 404


def test_my_gpus_are_those_the_directory_bills_to_the_user(base_url: str, client: httpx.Client, issued: Tokens,
                                                          machines: Machines) -> None:
    def mine(token: str, name: str) -> list[tuple[str, str, str]]:
        with log_in(base_url, token) as c:
            page = c.get(f"/users/{name}/gpus")
            assert page.status_code == 200
            return [(r[0], r[1], r[6]) for r in _rows(page.text, "my-gpus") if len(r) == 7]

    assert mine(issued.alice, "alice") == [("gpu01", "0", "in use")]
    assert mine(issued.bob, "bob") == [("gpu01", "1", "held but idle")]
    with log_in(base_url, issued.alice) as c:
        assert c.get("/users/bob/gpus").status_code == 403
    # bob's account on gpu01 billed to alice: the GPU is hers, no longer his.
    mapped = client.put("/v1/mappings", json={"node": "gpu01", "linux_user": "bob", "user": "alice"},
                        headers=bearer(issued.admin))
    assert mapped.status_code == 200, mapped.text
    assert mine(issued.alice, "alice") == [("gpu01", "0", "in use"), ("gpu01", "1", "held but idle")]
    assert mine(issued.bob, "bob") == []
    assert mine(issued.admin, "alice")[1] == ("gpu01", "1", "held but idle")
