"""The queue's news and its use-without-grant levels, pure: which lines a tick's decisions give whom, and
when a process on a GPU nobody granted its user is recorded, warned or stopped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from collector.enforcing.decisions import ProcessRef
from collector.enforcing.notices import Notifier, QueueNotice
from collector.queueing.facts import Ungranted
from collector.queueing.notices import tick_notices
from collector.queueing.ungranted import UngrantedUse
from collector.types import QueueSettings
from control.queue import idle
from control.queue.records import Decisions, End, GpuRef, Grant, Offer, Request, State
from control.queue.store import Standing
from control.queue.tick import Result

NOW = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
GPU = GpuRef("n1", 0, "rtx-3090")


def request(rid: int, user: str, state: State = State.QUEUED, **fields: object) -> Request:
    return Request(rid, user, None, frozenset({"rtx-3090"}), 1, Decimal(1), None, NOW, state=state,
                   **fields)  # type: ignore[arg-type]


def by_id(*requests: Request) -> dict[int, Standing]:
    return {r.id: Standing(r, "n" * 16, "n1", 1001, None, None, "") for r in requests}


def test_offers_grants_ends_idle_and_lease_end_reach_their_users_once() -> None:
    ending = request(3, "carol", State.GRANTED, gpus=(GPU,), granted_at=NOW, ends=NOW + timedelta(minutes=10))
    decisions = Decisions(offers=(Offer(1, (GPU,), NOW + timedelta(minutes=15)),),
                          grants=(Grant(2, (GPU,), NOW + timedelta(hours=1)),), ends=(End(4, "offer expired"),))
    notice = idle.IdleNotice(3, "carol", GPU, timedelta(minutes=60), NOW + timedelta(minutes=60))
    result = Result(decisions, idle=idle.Assessment((), (notice,), ()), live=(ending,))
    standings = by_id(request(1, "alice"), request(2, "bob"), ending, request(4, "dave", State.ENDED))
    warned: set[int] = set()
    got = [(n.user, n.event) for n in tick_notices(result, standings, NOW, warned)]
    assert got == [("alice", "offer"), ("bob", "grant"), ("dave", "release"), ("carol", "idle_warning"),
                   ("carol", "expiry_warning")]
    again = tick_notices(Result(Decisions(), live=(ending,)), standings, NOW, warned)
    assert again == []  # the lease's end is told once


def use(pid: int, user: str = "bob") -> Ungranted:
    return Ungranted("n1", 1002, user, user, GPU, ProcessRef("boot", pid, 7))


def test_level_0_records_level_1_warns_once_level_2_kills_after_the_grace_only_while_someone_waits() -> None:
    waiting = [request(9, "alice")]
    assert UngrantedUse(QueueSettings()).assess([use(1)], waiting, (), NOW).notices == ()
    warn = UngrantedUse(QueueSettings(default_level=1))
    first = warn.assess([use(1)], waiting, (), NOW)
    assert [n.event for _, _, n in first.notices] == ["ungranted_use"] and first.kills == {}
    assert warn.assess([use(1)], waiting, (), NOW).notices == ()
    kill = UngrantedUse(QueueSettings(levels={"rtx-3090": 2}, grace_s=60))
    assert kill.assess([use(1)], waiting, (), NOW).kills == {}  # the grace starts now
    assert kill.assess([use(1)], [], (), NOW + timedelta(seconds=60)).kills == {}  # nobody waits
    later = kill.assess([use(1)], waiting, (), NOW + timedelta(seconds=60))
    assert later.kills == {"n1": {1002: (ProcessRef("boot", 1, 7),)}}
    assert kill.assess([use(1, "root-ish")], waiting, {"root-ish"}, NOW + timedelta(hours=1)).kills == {}  # exempt


def test_a_use_that_stops_starts_a_new_grace() -> None:
    kill = UngrantedUse(QueueSettings(default_level=2, grace_s=60))
    waiting = [request(9, "alice")]
    kill.assess([use(1)], waiting, (), NOW)
    kill.assess([], waiting, (), NOW + timedelta(seconds=30))
    assert kill.assess([use(1)], waiting, (), NOW + timedelta(seconds=61)).kills == {}


def test_the_notifier_sends_queue_news_as_its_own_event() -> None:
    notice = QueueNotice("alice", "grant", "GPU request 2: n1 GPU 0 (rtx-3090) granted to you until 09:00 UTC.")
    notifier = Notifier("CNY", user_email_template="{user}@lab.example")
    assert notifier.payload(notice) == {"event": "gpu_queue_grant", "user": "alice",
                                        "text": f"gpuledger: {notice.text}"}
    assert notifier.recipients(notice) == ["alice@lab.example"]
