"""The GPU queue's console pages over HTTP, on a real database with the queue's real tick in between
(tests/api/queue_lab.py): a user files through the form (a double submit files one request), sees position, ETA
and its basis, claims, releases; a refusal shows the page again with the reason and the form as sent; nobody
sees or ends another user's requests; admins and operators boost, cancel, extend and approve with a reason
recorded in control.queue_action (a double submit records one action); auditors read only; the idle-held
report's numbers are store.idle_hours'."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import text

from api.console import i18n, sessions
from api.console.pages import queue_admin
from control.queue import admin, store
from control.queue.records import Policy
from ledger.service import Ledger
from tests.api.conftest import ApiDatabase, Tokens
from tests.api.queue_lab import A0, H0, run_tick, seed
from tests.console.conftest import csrf_of, log_in
from tests.console.test_money import KEY, _form
from tests.console.test_ops import _rows

MINE = "/users/alice/gpu-requests"


@pytest.fixture
def lab(api_db: ApiDatabase, issued: Tokens) -> Tokens:
    seed(api_db.admin_url)
    return issued


@contextmanager
def ssh_user(base: str, ledger: Ledger, user: str) -> Iterator[httpx.Client]:
    """A client with a session as the SSH-proven login makes it (no token behind it: actor ssh:USER@gpu01)."""
    with ledger.engine.begin() as conn:
        cookie = sessions.create_session(conn, sessions.WebPrincipal("user", user, f"ssh:{user}@gpu01"),
                                         lifetime=timedelta(hours=1))
    with httpx.Client(base_url=base, timeout=30, cookies={"gl_session": cookie}) as c:
        yield c


def _requests(ledger: Ledger) -> list[tuple[int, str, str]]:
    with ledger.engine.connect() as conn:
        return [(r.id, r.billing_user, r.state) for r in conn.execute(
            text("SELECT id, billing_user, state FROM control.queue_request ORDER BY id"))]


def _actions(ledger: Ledger) -> list[tuple[int, str, str, str]]:
    with ledger.engine.connect() as conn:
        return [(r.request_id, r.action, r.actor, r.reason) for r in conn.execute(
            text("SELECT request_id, action, actor, reason FROM control.queue_action ORDER BY id"))]


def _fmt(ledger: Ledger) -> i18n.Formats:
    return i18n.Formats("en", ledger.config.currency, ledger.config.timezone)


def test_a_user_files_once_on_a_double_submit_claims_and_releases(base_url: str, lab: Tokens,
                                                                   ledger: Ledger) -> None:
    with ssh_user(base_url, ledger, "alice") as c:
        hidden = _form(c, MINE, "/me/gpu-requests")
        data = {**hidden, "model:H100": "on", "count": "1", "hours": "2.5", "node": ""}
        first = c.post("/me/gpu-requests", data=data)
        again = c.post("/me/gpu-requests", data=data)   # the same form, sent again
        assert (first.status_code, again.status_code) == (303, 303)
        assert first.headers["location"] == again.headers["location"] == MINE
        (rid, user, state), = _requests(ledger)
        assert (user, state) == ("alice", "queued")
        live = _rows(c.get(MINE).text, "live-requests")
        assert live[0][:3] == [str(rid), "queued", "1 × H100, 2.5 h"]

        run_tick(ledger)   # the free H100 is offered
        page = c.get(MINE).text
        with ledger.engine.connect() as conn:
            offered = store.get(conn, rid)
        assert offered is not None and offered.offer_expires is not None
        row = _rows(page, "live-requests")[0]
        assert row[1:2] == ["offered"] and row[4] == "gpu02:0"
        assert f"offer expires {_fmt(ledger).datetime(offered.offer_expires)}" in row[3]
        claimed = c.post(f"/me/gpu-requests/{rid}/claim", data={"csrf": csrf_of(page)})
        assert claimed.status_code == 303
        with ledger.engine.connect() as conn:
            granted = store.get(conn, rid)
        assert granted is not None and granted.ends is not None and granted.granted_at is not None
        assert granted.ends - granted.granted_at == timedelta(hours=2, minutes=30)
        page = c.get(MINE).text
        assert f"lease ends {_fmt(ledger).datetime(granted.ends)}" in _rows(page, "live-requests")[0][3]
        released = c.post("/me/gpu-releases", data={"csrf": csrf_of(page), "request_id": str(rid)})
        assert released.status_code == 303
        page = c.get(MINE).text
    assert _requests(ledger) == [(rid, "alice", "ended")]
    assert _rows(page, "live-requests") == [["No live request."]]
    ended = _rows(page, "ended-requests")
    assert [ended[0][i] for i in (0, 1, 2, 5)] == [str(rid), "ended", "1 × H100, 2.5 h", "released"]


def test_a_queued_request_shows_its_position_and_eta_with_the_basis(base_url: str, lab: Tokens,
                                                                     ledger: Ledger) -> None:
    with log_in(base_url, lab.bob) as c:
        hidden = _form(c, "/users/bob/gpu-requests", "/me/gpu-requests")
        assert c.post("/me/gpu-requests", data={**hidden, "model:H100": "on", "count": "1",
                                                "hours": "3"}).status_code == 303
    run_tick(ledger)
    run_tick(ledger, busy={H0: "bob"})   # bob's process on the offered GPU: granted
    with log_in(base_url, lab.alice) as c:
        hidden = _form(c, MINE, "/me/gpu-requests")
        assert c.post("/me/gpu-requests", data={**hidden, "model:H100": "on", "count": "1"}).status_code == 303
        run_tick(ledger, busy={H0: "bob"})
        page = c.get(MINE).text
    (bob_id, _, _), (alice_id, _, _) = _requests(ledger)
    with ledger.engine.connect() as conn:
        bob, = admin.shown(conn, [r for r in [store.get(conn, bob_id)] if r is not None])
        mine, = admin.shown(conn, [r for r in [store.get(conn, alice_id)] if r is not None])
    assert mine.standing.position == 1 and mine.standing.eta == bob.request.ends and mine.standing.basis
    assert mine.standing.eta is not None
    row = _rows(page, "live-requests")[0]
    assert row[:3] == [str(alice_id), "queued", "1 × H100, 4 h"]
    assert row[3] == f"position 1ETA {_fmt(ledger).datetime(mine.standing.eta)}{mine.standing.basis}"  # <br>s
    assert str(bob_id) not in [r[0] for r in _rows(page, "live-requests")]   # bob's request is not on her page


def test_a_refusal_shows_the_reason_and_the_form_as_sent_and_files_nothing(base_url: str, lab: Tokens,
                                                                           ledger: Ledger) -> None:
    with log_in(base_url, lab.alice) as c:
        hidden = _form(c, MINE, "/me/gpu-requests")
        refused = c.post("/me/gpu-requests", data={**hidden, "model:H100": "on", "count": "2", "hours": "1.5",
                                                   "node": "gpu02"})
        assert refused.status_code == 422
        error = refused.text.split('id="form-error">', 1)[1].split("</p>", 1)[0]
        assert "no node has" in error
        form = refused.text.split('id="file-request"', 1)[1].split("</form>", 1)[0]
        assert 'name="model:H100" checked' in form and 'name="model:A100" >' in form
        assert 'value="2"' in form and 'value="1.5"' in form and '<option value="gpu02" selected>' in form
        fresh = KEY.search(form)
        assert fresh is not None and fresh.group(1) != hidden["idempotency_key"]
        bad = c.post("/me/gpu-requests", data={**hidden, "count": "two"})
        assert bad.status_code == 422 and "count" in bad.text.split('id="form-error">', 1)[1].split("</p>")[0]
        no_key = c.post("/me/gpu-requests", data={"csrf": hidden["csrf"], "count": "1"})
        assert no_key.status_code == 400 and "idempotency" in no_key.text
        no_csrf = c.post("/me/gpu-requests", data={"idempotency_key": hidden["idempotency_key"], "count": "1"})
        assert no_csrf.status_code == 403
        claim = c.post("/me/gpu-requests/999/claim", data={"csrf": hidden["csrf"]})
        assert claim.status_code == 404 and 'id="form-error"' in claim.text
    assert _requests(ledger) == []


def test_a_user_sees_and_ends_only_their_own_requests(base_url: str, lab: Tokens, ledger: Ledger) -> None:
    with log_in(base_url, lab.bob) as c:
        hidden = _form(c, "/users/bob/gpu-requests", "/me/gpu-requests")
        assert c.post("/me/gpu-requests", data={**hidden, "count": "1"}).status_code == 303
    (bob_id, _, _), = _requests(ledger)
    with ssh_user(base_url, ledger, "alice") as c:
        assert c.get("/users/bob/gpu-requests").status_code == 403
        page = c.get(MINE)
        assert page.status_code == 200 and str(bob_id) not in [r[0] for r in _rows(page.text, "live-requests")]
        csrf = csrf_of(page.text)
        for action in (f"/me/gpu-requests/{bob_id}/cancel", f"/me/gpu-requests/{bob_id}/claim"):
            assert c.post(action, data={"csrf": csrf}).status_code == 404
        assert c.post("/me/gpu-releases", data={"csrf": csrf, "request_id": str(bob_id)}).status_code == 404
        assert c.get("/admin/gpu-queue").status_code == 403
    assert _requests(ledger) == [(bob_id, "bob", "queued")]
    # Admins and auditors read bob's page; no form is theirs to send there (the forms act for the session's
    # own billing user, which they have none of).
    for token in (lab.admin, lab.operator, lab.auditor):
        with log_in(base_url, token) as c:
            seen = c.get("/users/bob/gpu-requests").text
            assert _rows(seen, "live-requests")[0][0] == str(bob_id)
            assert 'action="/me/' not in seen
    with log_in(base_url, lab.admin) as c:
        assert c.get("/users/nobody/gpu-requests").status_code == 404
        nobody = c.post("/me/gpu-requests", data={"csrf": csrf_of(c.get("/").text), "count": "1",
                                                  "idempotency_key": "console-admin-0123456789"})
        assert nobody.status_code == 409 and "no billing user" in nobody.text
    with log_in(base_url, lab.auditor) as c:
        assert c.post("/me/gpu-requests", data={"csrf": csrf_of(c.get("/").text)}).status_code == 403


def _file(ledger: Ledger, user: str, models: list[str], hours: str = "4") -> int:
    with ledger.engine.begin() as conn:
        from api.handlers.queue import catalog

        made, _ = admin.request(conn, user=user, project=None, body={"models": models, "hours": hours},
                                catalog=catalog(conn), policy=Policy(), now=datetime.now(UTC))
    return made.id


def test_an_operators_boost_is_recorded_once_with_its_reason(base_url: str, lab: Tokens, ledger: Ledger) -> None:
    a, b = _file(ledger, "alice", ["A100"]), _file(ledger, "bob", ["H100"])
    with log_in(base_url, lab.operator) as c:
        hidden = _form(c, "/admin/gpu-queue", f"/admin/gpu-queue/{a}/boost")
        data = {**hidden, "boost_hours": "12", "reason": "paper deadline"}
        first = c.post(f"/admin/gpu-queue/{a}/boost", data=data)
        again = c.post(f"/admin/gpu-queue/{a}/boost", data=data)   # the same form, sent again
        assert (first.status_code, again.status_code) == (303, 303)
        assert first.headers["location"] == again.headers["location"]
        assert _actions(ledger) == [(a, "boost", "api:operator-x", "paper deadline")]
        with ledger.engine.connect() as conn:
            (action_id,) = conn.execute(text("SELECT id FROM control.queue_action")).one()
            boosted = store.get(conn, a)
        assert first.headers["location"] == f"/admin/gpu-queue/{a}?acted={action_id}"
        assert boosted is not None and boosted.boost_hours == 12
        detail = c.get(first.headers["location"]).text
        assert 'id="acted"' in detail and 'id="request-boost">12<' in detail
        history = _rows(detail, "queue-actions")
        assert [h[2:] for h in history] == [["boost", "api:operator-x", "paper deadline", "boost_hours=0",
                                             "boost_hours=12"]]
        # No reason: refused by the API's schema, the page shown again with the sent hours; nothing recorded.
        hidden = _form(c, f"/admin/gpu-queue/{b}", f"/admin/gpu-queue/{b}/boost")
        no_reason = c.post(f"/admin/gpu-queue/{b}/boost", data={**hidden, "boost_hours": "7", "reason": ""})
        assert no_reason.status_code == 422 and 'id="form-error"' in no_reason.text
        assert 'name="boost_hours" min="0" max="168" required value="7"' in no_reason.text
        over = c.post(f"/admin/gpu-queue/{b}/boost", data={**hidden, "boost_hours": "169", "reason": "x"})
        assert over.status_code == 422 and "boost_hours" in over.text
        no_csrf = c.post(f"/admin/gpu-queue/{b}/boost", data={"idempotency_key": hidden["idempotency_key"],
                                                              "boost_hours": "1", "reason": "x"})
        assert no_csrf.status_code == 403
        cancelled = c.post(f"/admin/gpu-queue/{b}/cancel",
                           data={**_form(c, "/admin/gpu-queue", f"/admin/gpu-queue/{b}/cancel"),
                                 "reason": "node under repair"})
        assert cancelled.status_code == 303
    assert _actions(ledger) == [(a, "boost", "api:operator-x", "paper deadline"),
                                (b, "cancel", "api:operator-x", "node under repair")]
    with ledger.engine.connect() as conn:
        ended = store.get(conn, b)
    assert ended is not None and ended.reason == "cancelled by api:operator-x: node under repair"
    with log_in(base_url, lab.auditor) as c:
        listing = c.get("/admin/gpu-queue").text
        assert "/boost" not in listing and "/cancel" not in listing
        assert 'action="' not in c.get(f"/admin/gpu-queue/{a}").text.split("<main", 1)[1].split("</main>")[0]
        assert c.post(f"/admin/gpu-queue/{a}/boost", data={"csrf": csrf_of(listing), "boost_hours": "1",
                                                           "reason": "x"}).status_code == 403
    assert len(_actions(ledger)) == 2
    with log_in(base_url, lab.auditor) as c:   # the audit page's third log: the queue's actions, reasons shown
        log = _rows(c.get("/admin/audit", params={"log": "queue"}).text, "audit-rows")
        assert [r[1:4] for r in log] == [["api:operator-x", "cancel: node under repair", f"gpu-request:{b}"],
                                         ["api:operator-x", "boost: paper deadline", f"gpu-request:{a}"]]
        only = _rows(c.get("/admin/audit", params={"log": "queue", "target": f"gpu-request:{a}"}).text,
                     "audit-rows")
        assert [r[2] for r in only] == ["boost: paper deadline"]
        assert _rows(c.get("/admin/audit", params={"log": "queue", "action": "extend"}).text,
                     "audit-rows") == [["Nothing recorded."]]


def test_extend_and_approve_through_the_forms(base_url: str, lab: Tokens, ledger: Ledger) -> None:
    a = _file(ledger, "alice", ["A100"], hours="1")
    run_tick(ledger)
    run_tick(ledger, busy={A0: "alice"})   # granted
    b = _file(ledger, "bob", ["A100"])
    run_tick(ledger, busy={A0: "alice"})   # the other A100 offered to bob
    with log_in(base_url, lab.admin) as c:
        with ledger.engine.connect() as conn:
            before = store.get(conn, a)
        assert before is not None and before.ends is not None
        extended = c.post(f"/admin/gpu-queue/{a}/extend",
                          data={**_form(c, f"/admin/gpu-queue/{a}", f"/admin/gpu-queue/{a}/extend"), "hours": "2",
                                "reason": "long run"})
        assert extended.status_code == 303
        approved = c.post(f"/admin/gpu-queue/{b}/approve",
                          data={**_form(c, "/admin/gpu-queue", f"/admin/gpu-queue/{b}/approve"),
                                "reason": "runs in a container"})
        assert approved.status_code == 303
        detail = c.get(f"/admin/gpu-queue/{a}").text
    with ledger.engine.connect() as conn:
        after, bob = store.get(conn, a), store.get(conn, b)
    assert after is not None and after.ends is not None and after.ends - before.ends == timedelta(hours=2)
    assert bob is not None and bob.state.value == "granted"
    (_, _, action, actor, reason, was, now), = _rows(detail, "queue-actions")
    assert (action, actor, reason, was, now) == ("extend", "api:admin-x", "long run",
                                                 f"ends={_fmt(ledger).datetime(before.ends)}",
                                                 f"ends={_fmt(ledger).datetime(after.ends)}")
    assert [x[1] for x in _actions(ledger)] == ["extend", "approve"]


def test_the_list_filters_sorts_by_position_and_pages(base_url: str, lab: Tokens, ledger: Ledger,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    first = _file(ledger, "alice", ["H100"])
    run_tick(ledger)   # alice's request is offered the H100
    second, third = _file(ledger, "bob", ["H100"]), _file(ledger, "alice", ["H100"])
    run_tick(ledger, busy={H0: "alice"})   # granted; bob and alice queue behind it
    with log_in(base_url, lab.auditor) as c:
        rows = _rows(c.get("/admin/gpu-queue").text, "gpu-requests")
        assert [(r[0], r[2]) for r in rows] == [(str(second), "queued"), (str(third), "queued"),
                                                 (str(first), "granted")]
        assert [r[0] for r in _rows(c.get("/admin/gpu-queue?sort=user").text, "gpu-requests")] == [
            str(first), str(third), str(second)]
        assert [r[0] for r in _rows(c.get("/admin/gpu-queue?user=bob&state=").text, "gpu-requests")] == [
            str(second)]
        assert [r[0] for r in _rows(c.get("/admin/gpu-queue?state=granted").text, "gpu-requests")] == [str(first)]
        assert [r[0] for r in _rows(c.get("/admin/gpu-queue?node=gpu02&model=H100").text, "gpu-requests")] == [
            str(first)]
        assert _rows(c.get("/admin/gpu-queue?model=A100").text, "gpu-requests") == [["No live request matches."]]
        assert c.get("/admin/gpu-queue?state=sleeping").status_code == 422
        monkeypatch.setattr(queue_admin, "QUEUE_ROWS", 2)   # the app serves from this process
        paged = c.get("/admin/gpu-queue?model=H100").text
        assert [r[0] for r in _rows(paged, "gpu-requests")] == [str(second), str(third)]
        assert "Requests 1-2 of 3" in paged
        assert 'href="/admin/gpu-queue?model=H100&amp;sort=position&amp;page=2"' in paged   # the filter kept
        last = c.get("/admin/gpu-queue?model=H100&sort=position&page=2").text
        assert [r[0] for r in _rows(last, "gpu-requests")] == [str(first)] and 'rel="next"' not in last
        assert [r[0] for r in _rows(c.get("/admin/gpu-queue?page=9").text, "gpu-requests")] == [str(first)]
        assert c.get("/admin/gpu-queue/999").status_code == 404


def test_the_idle_report_is_store_idle_hours_for_the_week_with_its_csv(base_url: str, lab: Tokens,
                                                                       ledger: Ledger) -> None:
    """alice's grant was held idle from 9 days ago until she released it now: this week's share and last week's
    are each store.idle_hours over that week (the released row fixes the numbers)."""
    rid = _file(ledger, "alice", ["A100"])
    run_tick(ledger)
    run_tick(ledger, busy={A0: "alice"})
    now = datetime.now(UTC)
    with ledger.engine.begin() as conn:
        conn.execute(text("UPDATE control.queue_gpu SET idle_since = :t WHERE request_id = :r"),
                     {"t": now - timedelta(days=9, minutes=17), "r": rid})
        admin.release(conn, user="alice", now=now, request_id=rid)
    zone = ledger.config.timezone
    last_week = datetime.now(zone) - timedelta(days=7)
    with log_in(base_url, lab.auditor) as c:
        for day, page in ((None, c.get("/admin/idle-gpu-hours")),
                          (last_week, c.get(f"/admin/idle-gpu-hours?week={last_week.date()}"))):
            assert page.status_code == 200
            start, end = admin.week_of(day or datetime.now(zone))
            with ledger.engine.connect() as conn:
                expected = store.idle_hours(conn, since=start, until=min(end, datetime.now(UTC)))
            assert expected["alice"] > 0
            *rows, (total,) = _rows(page.text, "idle-hours")   # the users, then the footer's total
            assert [(u, Decimal(h.replace(",", ""))) for u, h in rows] == sorted(expected.items())
            assert Decimal(total.replace(",", "")) == sum(expected.values())
        csv_page = c.get(f"/admin/idle-gpu-hours?week={last_week.date()}&format=csv")
        assert csv_page.headers["content-type"].startswith("text/csv")
        lines = list(csv.reader(io.StringIO(csv_page.text)))
        start, end = admin.week_of(last_week)
        assert lines == [["week_start", "week_end", "user", "idle_gpu_hours"],
                         [start.isoformat(), end.isoformat(), "alice", str(expected["alice"])]]
    with log_in(base_url, lab.alice) as c:
        assert c.get("/admin/idle-gpu-hours").status_code == 403
