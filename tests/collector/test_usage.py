"""The pure usage computation, table by table, plus properties of the GPU split."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.charging.deltas import Usage, UsageSettings, compute, share_ns
from collector.charging.samples import Process, Sample
from tests.collector.samples import BOOT_B, BOOT_WALL, GPU0, GPU1, MIG, S, ended, proc, sample

GIB = 1 << 30
SETTINGS = UsageSettings()


Charges = dict[tuple[str, str, str], Decimal]


def charged(
    prev: Sample | None, cur: Sample, settings: UsageSettings = SETTINGS, resources: tuple[str, ...] = ("cpu", "gpu")
) -> Charges:
    """{(user, resource, device): seconds} of a computation, for compact expectations."""
    result = compute(prev, cur, settings)
    return {(u.linux_user, u.resource, u.device): u.seconds for u in result.usages if u.resource in resources}


def gaps(prev: Sample | None, cur: Sample, settings: UsageSettings = SETTINGS) -> dict[str, Decimal]:
    return {g.reason: g.seconds for g in compute(prev, cur, settings).gaps}


A, B = 1001, 1002
P_A = proc(500, A, start_s=10, cpu_s=5)
P_B = proc(600, B, start_s=10, cpu_s=5)

CPU_CASES = [
    pytest.param(
        sample(60, user_cpu={A: 10}), sample(120, user_cpu={A: 70, B: 3}),
        {("u1001", "cpu", ""): Decimal(60), ("u1002", "cpu", ""): Decimal(3)}, id="cgroup-deltas-and-a-new-slice",
    ),
    pytest.param(
        sample(60, user_cpu={A: 500}), sample(120, user_cpu={A: 7}),
        {("u1001", "cpu", ""): Decimal(7)}, id="cgroup-counter-reset-restarts-at-zero",
    ),
    pytest.param(
        sample(60, processes=(proc(500, A, 10, 5),)), sample(120, processes=(proc(500, A, 10, 65),)),
        {("u1001", "cpu", ""): Decimal(60)}, id="process-delta",
    ),
    pytest.param(
        sample(60, processes=(proc(500, A, 10, 50),)), sample(120, processes=(proc(500, A, 90, 2),)),
        {("u1001", "cpu", ""): Decimal(2)}, id="reused-pid-is-a-new-process",
    ),
    pytest.param(
        sample(60, processes=(proc(500, A, 10, 50),)), sample(120, processes=(proc(700, A, 30, 9),)),
        {}, id="process-older-than-baseline-but-unseen-is-not-guessed",
    ),
    pytest.param(
        sample(60, user_cpu={A: 10}, processes=(P_A,)),
        sample(120, user_cpu={A: 20}, processes=(proc(500, A, 10, 65),)),
        {("u1001", "cpu", ""): Decimal(10)}, id="cgroup-counter-wins-over-process-ticks",
    ),
    pytest.param(
        sample(60, user_cpu={A: 100}), sample(30, boot=BOOT_B, boot_wall=BOOT_WALL + 200 * S, user_cpu={A: 4}),
        {("u1001", "cpu", ""): Decimal(4)}, id="reboot-charges-the-new-boot-from-zero",
    ),
    pytest.param(None, sample(60, user_cpu={A: 10}), {}, id="first-sample-is-a-baseline"),
    pytest.param(
        sample(60, user_cpu={A: 10}), sample(120, user_cpu={A: 20}, machine="m2"), {},
        id="another-machine-is-a-baseline",
    ),
]


@pytest.mark.parametrize(("prev", "cur", "expected"), CPU_CASES)
def test_cpu(prev: Sample | None, cur: Sample, expected: dict[tuple[str, str, str], Decimal]) -> None:
    assert charged(prev, cur) == expected


def test_reboot_reports_the_lost_tail_as_a_gap() -> None:
    prev = sample(60, user_cpu={A: 100})
    cur = sample(30, boot=BOOT_B, boot_wall=BOOT_WALL + 200 * S, user_cpu={A: 4})
    result = compute(prev, cur, SETTINGS)
    assert "reboot" in result.flags and (result.start_ns, result.end_ns) == (0, 30 * S)
    assert gaps(prev, cur) == {"reboot": Decimal(140)}  # old boot's last sample at wall +60 s, new boot at +200 s


def test_a_sample_not_newer_than_the_baseline_does_not_advance_it() -> None:
    result = compute(sample(60, user_cpu={A: 10}), sample(60, user_cpu={A: 10}), SETTINGS)
    assert not result.advance and result.usages == ()


GPU_CASES = [
    pytest.param(
        sample(60, processes=(P_A,), gpu_processes=((GPU0, 500, GIB),)),
        sample(120, processes=(P_A,), gpu_processes=((GPU0, 500, GIB),)),
        SETTINGS, {("u1001", "gpu", GPU0): Decimal(60)}, id="one-user-one-gpu-whole-interval",
    ),
    pytest.param(
        sample(60, processes=(P_A, P_B), gpu_processes=((GPU0, 500, 3 * GIB), (GPU0, 600, GIB))),
        sample(120, processes=(P_A, P_B), gpu_processes=((GPU0, 500, 3 * GIB), (GPU0, 600, GIB))),
        SETTINGS, {("u1001", "gpu", GPU0): Decimal(45), ("u1002", "gpu", GPU0): Decimal(15)},
        id="shared-gpu-split-by-memory",
    ),
    pytest.param(
        sample(60, processes=(P_A, P_B), gpu_processes=((GPU0, 500, 3 * GIB), (GPU0, 600, GIB))),
        sample(120, processes=(P_A, P_B), gpu_processes=((GPU0, 500, 3 * GIB), (GPU0, 600, GIB))),
        UsageSettings(gpu_split="equal"), {("u1001", "gpu", GPU0): Decimal(30), ("u1002", "gpu", GPU0): Decimal(30)},
        id="shared-gpu-split-equally",
    ),
    pytest.param(
        sample(60, processes=(P_A,), gpu_processes=((GPU0, 500, GIB),)),
        sample(120, processes=(P_A, proc(600, B, 90, 1)), gpu_processes=((GPU0, 500, GIB), (GPU0, 600, GIB))),
        SETTINGS, {("u1001", "gpu", GPU0): Decimal(45), ("u1002", "gpu", GPU0): Decimal(15)},
        id="second-user-joins-halfway",
    ),
    pytest.param(
        sample(60, processes=(P_A, proc(501, A, 10, 1)), gpu_processes=((GPU0, 500, GIB), (GPU0, 501, GIB))),
        sample(120, processes=(P_A, proc(501, A, 10, 1)), gpu_processes=((GPU0, 500, GIB), (GPU0, 501, GIB))),
        SETTINGS, {("u1001", "gpu", GPU0): Decimal(60)}, id="two-processes-of-one-user-pay-one-gpu-once",
    ),
    pytest.param(
        sample(60, processes=(P_A,), gpu_processes=((GPU0, 500, GIB), (GPU1, 500, GIB))),
        sample(120, processes=(P_A,), gpu_processes=((GPU0, 500, GIB), (GPU1, 500, GIB))),
        SETTINGS, {("u1001", "gpu", GPU0): Decimal(60), ("u1001", "gpu", GPU1): Decimal(60)},
        id="one-process-on-two-gpus-pays-both",
    ),
    pytest.param(
        sample(60, processes=(P_A,), gpu_processes=((GPU0, 500, GIB),)),
        sample(120, accounting=(ended(GPU0, 500, 20, 80),)),
        SETTINGS, {("u1001", "gpu", GPU0): Decimal(40)}, id="ended-process-charged-until-its-accounted-end",
    ),
    pytest.param(
        sample(60, processes=(proc(700, B, 50, 1),)),
        sample(120, accounting=(ended(GPU1, 700, 70, 20),)),
        SETTINGS, {("u1002", "gpu", GPU1): Decimal(20)}, id="process-that-used-the-gpu-only-between-samples",
    ),
    pytest.param(
        sample(60, processes=(P_A,), gpu_processes=((GPU0, 500, None), (GPU0, 600, GIB))),
        sample(120, processes=(P_A, P_B), gpu_processes=((GPU0, 500, None), (GPU0, 600, GIB))),
        SETTINGS, {("u1001", "gpu", GPU0): Decimal(30), ("u1002", "gpu", GPU0): Decimal(30)},
        id="unknown-memory-falls-back-to-equal",
    ),
    pytest.param(
        sample(60, processes=(P_A,), gpu_processes=((GPU0, 500, GIB),)),
        sample(60 + 7200, processes=(P_A,), gpu_processes=((GPU0, 500, GIB),)),
        UsageSettings(max_gap_s=3600), {("u1001", "gpu", GPU0): Decimal(3600)}, id="sampled-presence-capped-at-max-gap",
    ),
    pytest.param(
        sample(60, processes=(P_A,), gpu_processes=((MIG, 500, GIB),)),
        sample(130, processes=(P_A,), gpu_processes=((MIG, 500, GIB),)),
        SETTINGS, {("u1001", "gpu", MIG): Decimal(30)}, id="mig-device-bills-its-share-of-the-gpu",
    ),
    pytest.param(
        sample(100, user_cpu={}),
        sample(30, boot=BOOT_B, boot_wall=BOOT_WALL + 500 * S, processes=(proc(900, A, 12, 1),),
               gpu_processes=((GPU0, 900, GIB),), user_cpu={}),
        SETTINGS, {("u1001", "gpu", GPU0): Decimal(18)}, id="after-reboot-from-process-start",
    ),
]


@pytest.mark.parametrize(("prev", "cur", "settings", "expected"), GPU_CASES)
def test_gpu(prev: Sample, cur: Sample, settings: UsageSettings, expected: dict[tuple[str, str, str], Decimal]) -> None:
    got = {k: v for k, v in charged(prev, cur, settings).items() if k[1] == "gpu"}
    assert got == expected


def test_unmetered_and_capped_time_is_reported_not_charged() -> None:
    prev = sample(60, processes=(P_A,), gpu_processes=((GPU0, 500, GIB),))
    assert gaps(prev, sample(120)) == {"gpu_process_ended_unmetered": Decimal(60)}
    late = sample(60 + 7200, processes=(P_A,), gpu_processes=((GPU0, 500, GIB),))
    assert gaps(prev, late, UsageSettings(max_gap_s=3600)) == {"gap_over_max": Decimal(3600)}
    orphan = sample(120, gpu_processes=((GPU0, 999, GIB),))
    assert gaps(prev, orphan)["unattributed_gpu_process"] == Decimal(60)


def test_records_carry_model_method_and_pids() -> None:
    prev = sample(60, processes=(P_A,), gpu_processes=((GPU0, 500, GIB),))
    result = compute(prev, sample(120, processes=(P_A,), gpu_processes=((GPU0, 500, GIB),)), SETTINGS)
    (usage,) = (u for u in result.usages if u.resource == "gpu")
    assert usage == Usage(A, "u1001", "gpu", GPU0, "NVIDIA A100", 60 * S, "nvml-process-sampling", (500,))


def rss(pid: int, uid: int, rss_bytes: int) -> Process:
    return proc(pid, uid, start_s=10, cpu_s=1)._replace(rss_bytes=rss_bytes)


MEMORY_CASES = [
    pytest.param(
        sample(60, processes=(rss(500, A, 2 * GIB),)), sample(120, processes=(rss(500, A, 4 * GIB),)),
        SETTINGS, {("u1001", "memory", ""): Decimal(180)}, id="trapezoid-(2+4)/2-GiB-for-60-s",
    ),
    pytest.param(
        sample(60, processes=(rss(500, A, GIB), rss(501, A, GIB), rss(600, B, 3 * GIB))),
        sample(120, processes=(rss(500, A, 2 * GIB), rss(700, 1003, GIB))),
        SETTINGS,
        {("u1001", "memory", ""): Decimal(120), ("u1002", "memory", ""): Decimal(90),
         ("u1003", "memory", ""): Decimal(30)},
        id="per-user-sums-a-user-gone-or-new-had-0-at-the-other-end",
    ),
    pytest.param(
        sample(60, processes=(rss(500, A, 8 * GIB),)),
        sample(30, boot=BOOT_B, boot_wall=BOOT_WALL + 200 * S, processes=(rss(500, A, 2 * GIB),)),
        SETTINGS, {("u1001", "memory", ""): Decimal(30)}, id="reboot-ramps-from-0-at-boot",
    ),
    pytest.param(
        sample(60, processes=(rss(500, A, 2 * GIB),)), sample(60 + 7200, processes=(rss(500, A, 2 * GIB),)),
        UsageSettings(max_gap_s=3600), {("u1001", "memory", ""): Decimal(7200)}, id="capped-at-max-gap",
    ),
    pytest.param(
        sample(60, processes=(rss(500, A, 1000),)), sample(120, processes=(rss(500, A, 3000),)),
        SETTINGS, {("u1001", "memory", ""): Decimal("0.000111758")},
        id="rounded-down-to-whole-GiB-nanoseconds",  # 2000 B x 60 s = 111758.709... GiB-ns
    ),
    pytest.param(
        sample(60, processes=(rss(500, A, 1),)), sample(61, processes=(rss(500, A, 1),)), SETTINGS, {},
        id="less-than-a-GiB-nanosecond-is-no-record",
    ),
    pytest.param(None, sample(60, processes=(rss(500, A, GIB),)), SETTINGS, {}, id="first-sample-is-a-baseline"),
]


@pytest.mark.parametrize(("prev", "cur", "settings", "expected"), MEMORY_CASES)
def test_memory(prev: Sample | None, cur: Sample, settings: UsageSettings, expected: Charges) -> None:
    assert charged(prev, cur, settings, resources=("memory",)) == expected


def test_memory_usage_names_its_method_and_pids() -> None:
    prev = sample(60, processes=(rss(500, A, GIB), rss(501, A, GIB)))
    result = compute(prev, sample(120, processes=(rss(501, A, GIB), rss(502, A, GIB))), SETTINGS)
    (usage,) = (u for u in result.usages if u.resource == "memory")
    assert usage == Usage(A, "u1001", "memory", "", "", 120 * S, "rss-sampled", (501, 502))


@given(
    total=st.integers(0, 10**12),
    weights=st.dictionaries(st.integers(1000, 1010), st.integers(0, 10**11), min_size=1, max_size=8),
)
def test_shares_sum_exactly_and_are_fair(total: int, weights: dict[int, int]) -> None:
    shares = share_ns(total, weights, {})
    assert sum(shares.values()) == total and set(shares) == set(weights)
    weight_sum = sum(weights.values()) or len(weights)
    for uid, share in shares.items():
        exact = total * (weights[uid] if sum(weights.values()) else 1) / weight_sum
        assert abs(share - exact) < 1.0001


holds = st.lists(
    st.tuples(st.integers(1000, 1004), st.floats(0, 59), st.integers(0, 8 * GIB), st.booleans()), min_size=1, max_size=6
)


@given(holds)
def test_a_gpu_second_is_never_billed_twice(rows: list[tuple[int, float, int, bool]]) -> None:
    """Whatever processes hold one GPU, the seconds charged on it never exceed the interval."""
    processes = tuple(proc(100 + n, uid, start_s=60 + offset, cpu_s=0) for n, (uid, offset, _, _) in enumerate(rows))
    on_gpu = tuple((GPU0, 100 + n, mem if known else None) for n, (_, _, mem, known) in enumerate(rows))
    result = compute(sample(60), sample(120, processes=processes, gpu_processes=on_gpu), SETTINGS)
    assert sum(u.amount_ns for u in result.usages if u.resource == "gpu") <= 60 * S
    earliest = min(offset for _, offset, _, _ in rows)
    expected = 60 * S - int((60 + earliest) * 100) * S // 100 + 60 * S
    assert sum(u.amount_ns for u in result.usages if u.resource == "gpu") == expected
