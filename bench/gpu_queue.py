"""Queue benchmark: the allocator's decision time for one tick, 1,000 nodes x 8 GPUs, 500 pending requests.

    .venv/bin/python bench/gpu_queue.py                   # 30 ticks per scenario
    .venv/bin/python bench/gpu_queue.py --runs 100 --nodes 2000 --pending 1000

``control.queue.allocator.allocate`` is pure (no clock, no database), so this times exactly the tick's
decisions: settling grants and offers, free GPUs, fair-share order, fitting, holds, backfill and every
queued request's estimate. CPU time is the process's (``time.process_time``), so other work on a shared
machine slows the wall time but not the figure. Three scenarios, each from a fixed seed:

- **busy**: 90 % of the GPUs granted (most pending requests cannot fit: holds and estimates do the work);
- **half**: half the GPUs granted (many offers this tick);
- **idle-held**: every GPU granted or offered, and 200 offers past their expiry this tick (they pass on).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.table import print_rows
from control.queue.allocator import allocate
from control.queue.records import GpuFact, GpuRef, Policy, Request, State

TARGET_CPU_MS = 50.0
MODELS = ("a100", "h100", "rtx3090", "l40s")
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
USERS = 300
PROJECTS = 40


def _lab(nodes: int, pending: int, granted_share: float, expired_offers: int, seed: int
         ) -> tuple[list[Request], list[GpuFact], dict[str, Decimal]]:
    """The live requests, the GPUs' facts and the decayed usage of one tick, drawn from ``seed``."""
    rnd = random.Random(seed)
    gpus = [GpuRef(f"n{i:04d}", j, MODELS[i % len(MODELS)]) for i in range(nodes) for j in range(8)]
    requests: list[Request] = []
    taken = set(rnd.sample(range(len(gpus)), int(len(gpus) * granted_share)))
    held = sorted(taken)
    next_id = 1
    running: dict[GpuRef, str] = {}
    while held:  # live grants and offers of 1, 2, 4 or 8 GPUs of one node
        first = held.pop()
        ref = gpus[first]
        block = [first] + [k for k in held[-7:] if gpus[k].node == ref.node][: rnd.choice((0, 1, 3, 7))]
        held = [k for k in held if k not in block]
        refs = tuple(gpus[k] for k in block)
        user = f"u{rnd.randrange(USERS)}"
        offered = expired_offers > 0
        expired_offers -= offered
        start = NOW - timedelta(minutes=rnd.randrange(1, 600))
        if offered:
            requests.append(Request(next_id, user, None, frozenset({ref.model}), len(refs), Decimal(4), None,
                                    start, State.OFFERED, refs, offer_expires=NOW - timedelta(seconds=1)))
        else:
            requests.append(Request(next_id, user, f"p{rnd.randrange(PROJECTS)}", frozenset(), len(refs),
                                    Decimal(8), None, start, State.GRANTED, refs, granted_at=start,
                                    ends=NOW + timedelta(minutes=rnd.randrange(1, 900))))
            running.update(dict.fromkeys(refs, user))
        next_id += 1
    for _ in range(pending):
        models = frozenset(rnd.sample(MODELS, rnd.choice((0, 1, 1, 2))))
        requests.append(Request(next_id, f"u{rnd.randrange(USERS)}", rnd.choice((None, f"p{rnd.randrange(PROJECTS)}")),
                                models, rnd.choice((1, 1, 1, 2, 4, 8)), Decimal(rnd.randrange(1, 48)), None,
                                NOW - timedelta(minutes=rnd.randrange(0, 5000))))
        next_id += 1
    facts = [GpuFact(g, frozenset({running[g]}) if g in running else frozenset()) for g in gpus]
    usage = {f"u{u}": Decimal(rnd.randrange(0, 2000)) for u in range(USERS)}
    usage |= {f"project:p{p}": Decimal(rnd.randrange(0, 20000)) for p in range(PROJECTS)}
    return requests, facts, usage


def _time(requests: Sequence[Request], facts: Sequence[GpuFact], usage: dict[str, Decimal], policy: Policy,
          runs: int) -> tuple[list[float], str]:
    """CPU milliseconds of each of ``runs`` calls, and what the last call decided."""
    times = []
    for _ in range(runs):
        start = time.process_time()
        decisions = allocate(requests, facts, usage, NOW, policy)
        times.append((time.process_time() - start) * 1000)
    summary = (f"{len(decisions.offers)} offers, {len(decisions.grants)} grants, {len(decisions.holds)} holds,"
               f" {len(decisions.ends)} ends, {len(decisions.estimates)} estimates")
    return times, summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pending", type=int, default=500)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args(argv)
    # Caps high enough that they do not cut the work short: the worst case fits and holds every request.
    policy = Policy(max_gpus_per_user=10_000, max_gpus_per_project=10_000, max_queued_per_user=10_000)
    scenarios = {"busy": (0.9, 0), "half": (0.5, 0), "idle-held": (1.0, 200)}
    rows = [("lab", f"{args.nodes} nodes x 8 GPUs ({args.nodes * 8} GPUs), {args.pending} pending requests,"
                    f" {USERS} users, {args.runs} ticks per scenario")]
    worst = 0.0
    for name, (share, expired) in scenarios.items():
        requests, facts, usage = _lab(args.nodes, args.pending, share, expired, seed=len(name))
        times, summary = _time(requests, facts, usage, policy, args.runs)
        p95 = sorted(times)[max(0, int(len(times) * 0.95) - 1)]
        worst = max(worst, p95)
        live = len(requests) - args.pending
        rows.append((f"{name}: {live} live grants/offers", summary))
        rows.append((f"{name}: CPU ms per tick (median / p95 / max)",
                     f"{statistics.median(times):.1f} / {p95:.1f} / {max(times):.1f}"))
    verdict = "met" if worst <= TARGET_CPU_MS else "NOT met"
    rows.append((f"target <= {TARGET_CPU_MS:.0f} ms CPU per tick (worst p95)", f"{worst:.1f} ms: {verdict}"))
    print_rows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
