"""The GPU queue driver's pure parts: the ``gpu-requests`` answer parsed field by field, the samples' GPU
facts and idle observations, the ``queue-status`` documents (checked by the probe's own validator)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from collector.charging.samples import GpuProcess
from collector.config import ControllerConfig
from collector.queueing.answers import document, entries, fingerprint
from collector.queueing.driver import to_read
from collector.queueing.facts import IDLE_MIN_MEMORY, node_facts, pool_model
from collector.queueing.filed import BadReport, parse_report
from collector.types import QueueSettings
from control.queue.records import GpuRef, Request, State
from control.queue.store import Standing
from ledger.errors import ConfigError
from probe import queuestatus
from tests.collector.samples import GPU0, GPU1, sample

BODY = {"op": "request", "nonce": "n" * 16, "models": [], "count": 1, "hours": "4", "node": None, "run": False}
NOW = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)


def answer(**fields: object) -> bytes:
    return json.dumps({"ok": True, "verb": "gpu-requests", "present": True, "more": False, "requests": [],
                       "refused": [], **fields}).encode()


def test_a_malformed_entry_is_reported_and_the_others_kept() -> None:
    good = {"uid": 1001, "user": "alice", "ctime": 1764672000, "request": BODY}
    bad = [{"uid": True, "user": "bob", "ctime": 1, "request": BODY}, {"uid": 1002, "user": "", "ctime": 1,
           "request": BODY}, {"uid": 1003, "user": "carol", "ctime": 1, "request": ["op"]}, "text",
           {"uid": 1004, "user": "dave", "ctime": 1.5, "request": BODY}]
    report = parse_report("n1", answer(requests=[bad[0], good, *bad[1:]],
                                       refused=[{"uid": 1005, "reason": "symlink", "detail": ""},
                                                {"uid": "x", "reason": "oversize"}], more=True))
    assert [(f.node, f.uid, f.linux_user, f.body) for f in report.filed] == [("n1", 1001, "alice", BODY)]
    assert [(r.uid, r.reason) for r in report.refused] == [(1005, "symlink")]
    assert len(report.malformed) == 6 and report.more


def test_a_held_entry_carries_its_handle_and_a_bad_handle_is_malformed() -> None:
    entry = {"uid": 1001, "user": "alice", "ctime": 1764672000, "request": BODY}
    report = parse_report("n1", answer(requests=[
        {**entry, "handle": "1764672000-0123456789abcdef"}, entry,
        {**entry, "handle": "../1764672000-0123456789abcdef"}, {**entry, "handle": 7}]))
    assert [f.handle for f in report.filed] == ["1764672000-0123456789abcdef", None]  # None: an older node's
    assert len(report.malformed) == 2


@pytest.mark.parametrize("stdout", [b"nope", b"[]", json.dumps({"ok": False}).encode(), answer(requests={})])
def test_an_answer_that_is_not_the_document_is_refused_whole(stdout: bytes) -> None:
    with pytest.raises(BadReport) as caught:
        parse_report("n1", stdout)
    assert caught.value.node == "n1"


def test_pool_models_are_what_users_type() -> None:
    assert pool_model("NVIDIA GeForce RTX 3090") == "rtx-3090"
    assert pool_model("NVIDIA A100-SXM4-80GB") == "a100-sxm4-80gb"
    assert pool_model("Tesla V100-PCIE-32GB") == "v100-pcie-32gb"
    assert pool_model(None) == "unknown"


def test_facts_map_processes_to_billing_users_and_fail_closed() -> None:
    s = sample(10, gpu_processes=((GPU0, 10, IDLE_MIN_MEMORY),))
    s = replace(s, gpu_processes=(
        GpuProcess(GPU0, 10, IDLE_MIN_MEMORY, uid=1001, user="alice"),
        GpuProcess(GPU1, 11, 1 << 20, uid=1002, user="stranger"),  # bills to nobody: not free
        GpuProcess(GPU1, 12, 1 << 20, uid=0, user="root"),  # the driver's helpers do not count
    ))
    facts = node_facts("n1", s, {("n1", "alice"): "team-a"})
    first, second = facts.facts
    assert first.ref == GpuRef("n1", 0, "a100") and first.users == {"team-a"} and not first.unknown_use
    assert second.users == frozenset() and second.unknown_use
    assert facts.idle == {first.ref: True, second.ref: False}  # held at 0 % with 1 GiB: idle


def test_a_gpu_with_utilization_or_little_memory_is_not_idle() -> None:
    s = replace(sample(10), gpu_processes=(GpuProcess(GPU0, 10, IDLE_MIN_MEMORY - 1, uid=1001, user="alice"),
                                           GpuProcess(GPU1, 11, IDLE_MIN_MEMORY, uid=1001, user="alice")))
    s = replace(s, gpus=(s.gpus[0], replace(s.gpus[1], utilization_percent=None)))
    assert set(node_facts("n1", s, {("n1", "alice"): "a"}).idle.values()) == {False}


def standing(rid: int, state: State, **fields: object) -> Standing:
    r = Request(rid, "team-a", None, frozenset({"a100"}), 1, Decimal(4), None, NOW, state=state,
                **fields)  # type: ignore[arg-type]
    return Standing(r, f"nonce{rid:011d}x", "n1", 1001, 1 if state is State.QUEUED else None,
                    NOW if state is State.QUEUED else None, "GPUs free now\x1b[31m")


def test_the_answer_passes_the_probes_own_check() -> None:
    rows = [standing(1, State.GRANTED, gpus=(GpuRef("n1", 0, "a100"),), granted_at=NOW, ends=NOW),
            standing(2, State.QUEUED), standing(3, State.ENDED, reason="offer expired")]
    doc = document(1001, "alice", entries(rows), NOW)
    assert queuestatus.problems(doc, 1001, "alice") == []
    granted, queued, ended = doc["requests"]
    assert granted["gpus"] == [{"node": "n1", "index": 0, "model": "a100"}] and granted["ends"] == int(NOW.timestamp())
    assert (queued["position"], queued["eta_basis"]) == (1, "GPUs free now?[31m")
    assert (ended["state"], ended["reason"], ended["position"]) == ("ended", "offer expired", None)
    moved = [standing(2, State.QUEUED)]
    later = entries([rows[0], Standing(moved[0].request, moved[0].nonce, "n1", 1001, 1, NOW.replace(minute=5), "")])
    assert fingerprint(later) == fingerprint(doc["requests"][:2])  # only the estimate moved: waits for the refresh
    assert fingerprint(entries(rows[:1])) != fingerprint(doc["requests"][:2])


def test_an_answer_keeps_the_live_requests_and_the_newest_ended_within_the_limit() -> None:
    rows = [standing(i, State.ENDED) for i in range(1, 80)] + [standing(80, State.QUEUED)]
    ids = [r["id"] for r in entries(rows)]
    assert len(ids) == queuestatus.MAX_REQUESTS and ids[-1] == 80 and ids[0] == 80 - 63


ENV = {"GPULEDGER_DATABASE_URL": "postgresql+psycopg://x@localhost/x", "GPULEDGER_INVENTORY": "/dev/null"}


@pytest.mark.parametrize(("value", "on"), [("true", True), ("", False), ("off", False)])
def test_the_queue_key_is_off_by_default_and_fails_fast(value: str, on: bool) -> None:
    assert ControllerConfig.from_env(ENV).queue is None
    assert (ControllerConfig.from_env({**ENV, "GPULEDGER_QUEUE": value}).queue is not None) is on
    with pytest.raises(ConfigError) as caught:
        ControllerConfig.from_env({**ENV, "GPULEDGER_QUEUE": "maybe"})
    assert caught.value.key == "GPULEDGER_QUEUE"


def test_ungranted_levels_per_pool_with_a_default() -> None:
    queue = ControllerConfig.from_env({**ENV, "GPULEDGER_QUEUE": "on", "GPULEDGER_QUEUE_UNGRANTED": "*=1, rtx-3090=2",
                                       "GPULEDGER_QUEUE_UNGRANTED_GRACE_SECONDS": "60"}).queue
    assert queue is not None
    assert (queue.level("rtx-3090"), queue.level("a100"), queue.grace_s) == (2, 1, 60)
    assert QueueSettings().level("a100") == 0  # record only unless an admin says more


@pytest.mark.parametrize("value", ["rtx=3", "rtx", "=1", "a=1,a=2"])
def test_a_bad_ungranted_level_names_its_key(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ControllerConfig.from_env({**ENV, "GPULEDGER_QUEUE": "on", "GPULEDGER_QUEUE_UNGRANTED": value})
    assert caught.value.key == "GPULEDGER_QUEUE_UNGRANTED"


def test_only_nodes_whose_sample_counts_something_waiting_are_read() -> None:
    """A reached node is asked for its drop box unless its sample counted the box and the holding place empty;
    an unknown count (an older probe, an unlistable box) is asked, an unreached node never."""
    session = object()
    sampled = [("empty", replace(sample(10), gpu_requests_waiting=0), session),
               ("waiting", replace(sample(10), gpu_requests_waiting=2), session),
               ("old-probe", sample(10), session),
               ("unreached", replace(sample(10), gpu_requests_waiting=5), None)]
    assert to_read(sampled) == ["waiting", "old-probe"]  # type: ignore[arg-type]
