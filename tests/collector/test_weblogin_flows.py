"""control.weblogin against the test PostgreSQL, as the app role: start, prove, poll, redeem, expiry, limits."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, create_engine, text

from control import weblogin
from control.weblogin import FlowState, ProveOutcome
from tests.collector.conftest import Database

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
BROWSER = "b" * 43
OTHER_BROWSER = "o" * 43


@pytest.fixture
def engine(api_database: Database) -> Iterator[Engine]:
    engine = create_engine(api_database.app_url, pool_size=4)
    yield engine
    engine.dispose()


def start(engine: Engine, browser: str = BROWSER, now: datetime = T0) -> weblogin.LoginFlow:
    with engine.begin() as conn:
        return weblogin.start(conn, browser, now=now)


def prove(engine: Engine, code: str, now: datetime = T0 + timedelta(seconds=30), user: str = "alice",
          written_at: datetime | None = None) -> ProveOutcome:
    with engine.begin() as conn:
        return weblogin.prove(conn, code, billing_user=user, node="n1", linux_user=user + "-linux",
                              written_at=written_at or now, now=now)


def poll(engine: Engine, flow: weblogin.LoginFlow, browser: str = BROWSER,
         now: datetime = T0 + timedelta(seconds=40)) -> FlowState | None:
    with engine.begin() as conn:
        return weblogin.poll(conn, flow.flow_id, browser, now=now)


def redeem(engine: Engine, flow: weblogin.LoginFlow, browser: str = BROWSER,
           now: datetime = T0 + timedelta(seconds=40)) -> weblogin.Proof | None:
    with engine.begin() as conn:
        return weblogin.redeem(conn, flow.flow_id, browser, now=now)


def test_a_flow_is_proven_then_redeemed_once(engine: Engine) -> None:
    flow = start(engine)
    assert len(flow.code) == 8 and set(flow.code) <= set(weblogin.ALPHABET)
    assert flow.display == f"{flow.code[:4]}-{flow.code[4:]}" and flow.expires_at == T0 + weblogin.LIFETIME
    with engine.begin() as conn:
        assert weblogin.awaiting(conn, now=T0)
        stored = conn.execute(text("SELECT code_hash, browser_hash FROM control.web_login")).one()
    assert flow.code.encode() not in bytes(stored.code_hash) and BROWSER.encode() not in bytes(stored.browser_hash)
    assert poll(engine, flow) is FlowState.PENDING and redeem(engine, flow) is None
    assert prove(engine, weblogin.display(flow.code).lower()) is ProveOutcome.PROVEN
    with engine.begin() as conn:
        assert not weblogin.awaiting(conn, now=T0)
    assert poll(engine, flow) is FlowState.PROVEN
    assert redeem(engine, flow) == weblogin.Proof("alice", "n1", "alice-linux")
    assert redeem(engine, flow) is None  # single use
    assert poll(engine, flow) is FlowState.REDEEMED


def test_another_browser_sees_nothing_and_cannot_redeem(engine: Engine) -> None:
    flow = start(engine)
    prove(engine, flow.code)
    assert poll(engine, flow, OTHER_BROWSER) is None
    assert redeem(engine, flow, OTHER_BROWSER) is None
    assert redeem(engine, flow) is not None


def test_a_second_proof_unknown_and_expired_codes_are_refused(engine: Engine) -> None:
    flow = start(engine)
    assert prove(engine, flow.code, user="alice") is ProveOutcome.PROVEN
    assert prove(engine, flow.code, user="mallory") is ProveOutcome.ALREADY_PROVEN
    assert redeem(engine, flow) == weblogin.Proof("alice", "n1", "alice-linux")
    unknown = "".join(reversed(flow.code)) if flow.code != flow.code[::-1] else "ABCDEFGH"
    assert prove(engine, unknown) is ProveOutcome.UNKNOWN_CODE
    late = start(engine)
    after = T0 + weblogin.LIFETIME
    assert prove(engine, late.code, now=after) is ProveOutcome.EXPIRED
    assert poll(engine, late, now=after) is FlowState.EXPIRED
    with engine.begin() as conn:
        assert not weblogin.awaiting(conn, now=after)


def test_a_proven_flow_not_redeemed_in_time_expires(engine: Engine) -> None:
    flow = start(engine)
    prove(engine, flow.code)
    after = T0 + weblogin.LIFETIME + timedelta(seconds=1)
    assert poll(engine, flow, now=after) is FlowState.EXPIRED
    assert redeem(engine, flow, now=after) is None


def test_a_code_written_before_its_flow_started_is_refused(engine: Engine) -> None:
    flow = start(engine)
    early = T0 - weblogin.CLOCK_SLACK - timedelta(seconds=1)
    assert prove(engine, flow.code, written_at=early) is ProveOutcome.WRITTEN_BEFORE_START
    skewed = T0 - weblogin.CLOCK_SLACK + timedelta(seconds=1)  # a node clock a little behind still works
    assert prove(engine, flow.code, written_at=skewed) is ProveOutcome.PROVEN


def test_bad_codes_and_weak_secrets_are_errors_with_data(engine: Engine) -> None:
    with pytest.raises(weblogin.BadCode) as bad:
        weblogin.normalize("ABCD-EFG0")
    assert bad.value.given == "ABCD-EFG0"
    assert weblogin.normalize(" abcd-efgh ") == "ABCDEFGH"
    for wrong in ("ABCDEFGHJ", "ABC-DEFGH-", "ABCDIFGH", "AB--CDEFGH"):
        with pytest.raises(weblogin.BadCode):
            weblogin.normalize(wrong)
    with pytest.raises(weblogin.WeakBrowserSecret) as weak:
        start(engine, "short")
    assert weak.value.length == 5


def test_open_flows_are_capped(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(weblogin, "MAX_OPEN_FLOWS", 3)
    flows = [start(engine) for _ in range(3)]
    with pytest.raises(weblogin.TooManyFlows) as refused:
        start(engine)
    assert (refused.value.open_flows, refused.value.limit) == (3, 3)
    prove(engine, flows[0].code)  # a proven flow no longer counts, nor an expired one
    start(engine)
    start(engine, now=T0 + weblogin.LIFETIME)


def test_concurrent_redeems_log_in_once(engine: Engine) -> None:
    flow = start(engine)
    prove(engine, flow.code)
    barrier = threading.Barrier(4)
    results: list[weblogin.Proof | None] = []

    def attempt() -> None:
        barrier.wait()
        results.append(redeem(engine, flow))

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(result is not None for result in results) == [False, False, False, True]


def test_flows_older_than_a_day_are_pruned(engine: Engine) -> None:
    start(engine)
    start(engine, now=T0 + timedelta(hours=20))
    with engine.begin() as conn:
        assert weblogin.prune(conn, now=T0 + weblogin.RETENTION) == 0
        assert weblogin.prune(conn, now=T0 + weblogin.RETENTION + timedelta(seconds=1)) == 1
        assert conn.execute(text("SELECT count(*) FROM control.web_login")).scalar_one() == 1
