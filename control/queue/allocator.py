"""The allocator: one pure function from the queue's state, the GPUs' last facts and the time to the tick's
decisions (docs/queue.md, "Grants"). It never reads a clock or a database, so the simulation tests drive it
tick by tick and a restarted controller recomputes the same decisions from the same stored state.

Per tick, in this order:
1. a grant whose lease has ended is ended; an offer the user claimed (``claims``, or a process of theirs now
   on an offered GPU) becomes a grant with an end; an unclaimed offer past its expiry is ended (the GPUs pass
   on to the next in line this same tick);
2. a GPU is free when nothing live holds it and its last sample shows no compute process at all (a GPU of a
   node without a sample this tick is not free);
3. queued requests go in fair-share order (``priority.order``); each is offered GPUs on one node when it fits
   and its user's and project's GPU caps allow; the first one that does not fit in its pool, when it asks for
   more than one GPU, holds the free GPUs of the node where it should complete soonest; a later request may
   take held GPUs only when its lease ends before that hold completes (backfill);
4. every queued request gets its position and an estimate.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal

from control.queue.priority import order
from control.queue.records import (
    Decisions,
    End,
    Estimate,
    GpuFact,
    GpuRef,
    Grant,
    Hold,
    Offer,
    Policy,
    Request,
    State,
)

LEASE_ENDED = "lease ended"
OFFER_EXPIRED = "offer expired"


def _settle(requests: Sequence[Request], facts: Mapping[GpuRef, GpuFact], claims: Collection[int],
            now: datetime) -> tuple[list[Grant], list[End], list[Request]]:
    """Step 1: the grants and ends among granted and offered requests, and the requests still live after it."""
    grants, ends, kept = [], [], []
    for r in requests:
        if r.state is State.GRANTED:
            if r.ends is not None and r.ends <= now:
                ends.append(End(r.id, LEASE_ENDED))
                continue
        elif r.state is State.OFFERED:
            if r.id in claims or any(g in facts and r.user in facts[g].users for g in r.gpus):
                grant = Grant(r.id, r.gpus, now + r.duration)
                grants.append(grant)
                r = replace(r, state=State.GRANTED, granted_at=now, ends=grant.ends)
            elif r.offer_expires is not None and r.offer_expires <= now:
                ends.append(End(r.id, OFFER_EXPIRED))
                continue
        kept.append(r)
    return grants, ends, kept


def _available_at(r: Request) -> datetime | None:
    """When a GPU of live request ``r`` should be free again, from its declared end."""
    if r.state is State.GRANTED:
        return r.ends
    if r.state is State.OFFERED and r.offer_expires is not None:
        return r.offer_expires + r.duration
    return None


def _overlaps(a: frozenset[str], b: frozenset[str]) -> bool:
    return not a or not b or bool(a & b)


class _Pools:
    """The free GPUs by node during one allocation, and the holds placed on some of them."""

    def __init__(self, free: set[GpuRef]) -> None:
        # In node order, so that ``fit`` may stop at the first exact fit; a node leaves when its last GPU goes.
        # Per node also the free GPUs' models and how many are held, and ``levels``: per model (None: any) and
        # free count the nodes with exactly that many, so that ``fit`` finds the best fit of a one-model or
        # any-model request by look-up, walking only the nodes with a hold (bench/queue.py: 1,000 nodes).
        self.by_node: dict[str, set[GpuRef]] = {}
        self.models: dict[str, Counter[str]] = {}
        for ref in sorted(free, key=lambda g: g.node):
            self.by_node.setdefault(ref.node, set()).add(ref)
            self.models.setdefault(ref.node, Counter())[ref.model] += 1
        self.levels: dict[str | None, dict[int, set[str]]] = defaultdict(dict)
        for node, refs in self.by_node.items():
            self._move(None, node, 0, len(refs))
            for model, count in self.models[node].items():
                self._move(model, node, 0, count)
        self.held: dict[GpuRef, Hold] = {}
        self.held_on: Counter[str] = Counter()
        # Nodes whose free GPUs are of more than one model: a request naming several models counts their sum
        # there, which no one model's level holds (``_best_models`` weighs them one by one).
        self.mixed = {node for node, models in self.models.items() if len(models) > 1}

    def _move(self, key: str | None, node: str, old: int, new: int) -> None:
        levels = self.levels[key]
        if old:
            levels[old].discard(node)
        if new:
            levels.setdefault(new, set()).add(node)

    def fit(self, r: Request, now: datetime) -> tuple[GpuRef, ...] | None:
        """The GPUs to offer ``r``: ``count`` usable ones on the node with the fewest usable (best fit; ties:
        the first node by name)."""
        ends = now + r.duration
        wanted = tuple(r.models)
        if r.node is None and len(wanted) <= 1:
            best = self._best_level(r, wanted[0] if wanted else None, ends)
        elif r.node is None:
            best = self._best_models(r, wanted, ends)
        else:
            best = self._best_walk(r, wanted, ends)
        if best is None:
            return None
        usable = self._usable(r, best[1], ends)
        return tuple(sorted(usable, key=lambda g: (g in self.held, g.index))[: r.count])

    def _best_walk(self, r: Request, wanted: tuple[str, ...], ends: datetime) -> tuple[int, str] | None:
        """``fit``'s (usable count, node) by walking the candidate nodes in node order."""
        best: tuple[int, str] | None = None
        for node in self._candidates(r):
            n = len(self.by_node[node]) if not wanted else sum(map(self.models[node].__getitem__, wanted))
            if n < r.count:  # the matching free GPUs bound the usable ones
                continue
            if self.held_on[node]:
                n = len(self._usable(r, node, ends))
            if n >= r.count and (best is None or (n, node) < best):
                best = (n, node)
                if n == r.count:  # no node has fewer, and later nodes sort after this one
                    break
        return best

    def _best_level(self, r: Request, key: str | None, ends: datetime) -> tuple[int, str] | None:
        """``fit``'s (usable count, node) for a request of one model (``key``) or any (None) on no named node:
        the fewest matching free GPUs >= ``count`` among nodes without a hold, against each node with one."""
        best: tuple[int, str] | None = None
        levels = self.levels.get(key, {})
        for k in sorted(levels):
            clear = [n for n in levels[k] if not self.held_on[n]] if k >= r.count else []
            if clear:
                best = (k, min(clear))
                break
        for node, held in self.held_on.items():
            if held:
                n = len(self._usable(r, node, ends))
                if n >= r.count and (best is None or (n, node) < best):
                    best = (n, node)
        return best

    def _best_models(self, r: Request, wanted: tuple[str, ...], ends: datetime) -> tuple[int, str] | None:
        """``fit``'s (usable count, node) for a request of several models on no named node, as ``_best_walk``
        would find it: on a node of one free model (most nodes) the usable count is that model's level, so each
        wanted model's fewest >= ``count`` among such nodes without a hold is a look-up; the nodes of several free
        models and those with a hold are counted one by one."""
        best: tuple[int, str] | None = None
        for model in wanted:
            levels = self.levels.get(model, {})
            for k in sorted(levels):
                clear = [n for n in levels[k] if not self.held_on[n] and n not in self.mixed] if k >= r.count else []
                if clear:
                    if best is None or (k, min(clear)) < best:
                        best = (k, min(clear))
                    break
        for node in self.mixed | {n for n, held in self.held_on.items() if held}:
            if node not in self.by_node:
                continue
            if self.held_on[node]:
                n = len(self._usable(r, node, ends))
            else:
                n = sum(map(self.models[node].__getitem__, wanted))
            if n >= r.count and (best is None or (n, node) < best):
                best = (n, node)
        return best

    def _candidates(self, r: Request) -> Iterable[str]:
        """In node order, the nodes with a free GPU ``r`` matches."""
        if r.node is not None:
            return [r.node] if r.node in self.by_node else []
        if not r.models:
            return self.by_node
        return sorted(set().union(*(n for m in r.models for n in self.levels.get(m, {}).values())))

    def _usable(self, r: Request, node: str, ends: datetime) -> list[GpuRef]:
        """The free GPUs of ``node`` that ``r`` matches and may take: unheld, or held by a hold that completes
        after ``r``'s lease would end (backfill)."""
        return [g for g in self.by_node[node] if r.matches(g) and self._lendable(g, ends)]

    def _lendable(self, g: GpuRef, ends: datetime) -> bool:
        hold = self.held.get(g)
        return hold is None or (hold.completes is not None and ends <= hold.completes)

    def take(self, gpus: Sequence[GpuRef]) -> None:
        for g in gpus:
            refs = self.by_node[g.node]
            self._move(None, g.node, len(refs), len(refs) - 1)
            self._move(g.model, g.node, self.models[g.node][g.model], self.models[g.node][g.model] - 1)
            refs.discard(g)
            self.models[g.node][g.model] -= 1
            if not self.models[g.node][g.model]:
                del self.models[g.node][g.model]
                if len(self.models[g.node]) <= 1:
                    self.mixed.discard(g.node)
            if not refs:
                del self.by_node[g.node], self.models[g.node]
            if self.held.pop(g, None) is not None:
                self.held_on[g.node] -= 1

    def hold(self, r: Request, availability: Mapping[GpuRef, datetime | None], now: datetime) -> Hold | None:
        """Hold for ``r`` the free matching GPUs of the node where its ``count`` should be free soonest."""
        per_node: dict[str, list[datetime | None]] = defaultdict(list)
        for g, at in availability.items():
            if r.matches(g) and g not in self.held:
                per_node[g.node].append(at)
        previous = {g.node for g in r.gpus}
        choices = []
        for node, times in per_node.items():
            if len(times) < r.count:
                continue
            known = sorted(t for t in times if t is not None)
            completes = max(now, known[r.count - 1]) if len(known) >= r.count else None
            choices.append((completes is None, completes or now, node not in previous, node))
        if not choices:
            return None
        unknown, completes, _, node = min(choices)
        gpus = tuple(sorted((g for g in self.by_node.get(node, ()) if r.matches(g) and g not in self.held),
                            key=lambda g: g.index))[: r.count]
        hold = Hold(r.id, gpus, None if unknown else completes)
        for g in gpus:
            self.held[g] = hold
            self.held_on[g.node] += 1
        return hold


def _caps_allow(r: Request, in_use: Counter[str], policy: Policy) -> bool:
    if in_use[f"user:{r.user}"] + r.count > policy.max_gpus_per_user:
        return False
    return r.project is None or in_use[f"project:{r.project}"] + r.count <= policy.max_gpus_per_project


def _use(r: Request, in_use: Counter[str], count: int) -> None:
    in_use[f"user:{r.user}"] += count
    if r.project is not None:
        in_use[f"project:{r.project}"] += count


def _estimates(queued: Sequence[Request], availability: Mapping[GpuRef, datetime | None],
               held: Mapping[int, Hold], now: datetime) -> list[Estimate]:
    """Position in the pool (1 = next) and ETA by list scheduling over the declared ends: each request ahead
    takes the earliest-free matching GPUs for its declared hours. Node placement is not simulated, except
    for a hold, whose ETA is its node's own completion."""
    heaps: dict[str, list[datetime]] = defaultdict(list)
    for g, at in availability.items():
        if at is not None:
            heaps[g.model].append(at)
    for h in heaps.values():
        heapq.heapify(h)
    seen: Counter[frozenset[str]] = Counter()
    result = []
    for r in queued:
        position = 1 + sum(n for key, n in seen.items() if _overlaps(key, r.models))
        seen[r.models] += 1
        models = [m for m in heaps if not r.models or m in r.models]
        taken: list[tuple[datetime, str]] = []
        for _ in range(r.count):
            model = min((m for m in models if heaps[m]), key=lambda m: heaps[m][0], default=None)
            if model is None:
                break
            taken.append((heapq.heappop(heaps[model]), model))
        if len(taken) < r.count:
            result.append(Estimate(r.id, position, None, "unknown: too few GPUs with a declared end"))
            continue
        start = max([now, *(t for t, _ in taken)])
        for _, model in taken:
            heapq.heappush(heaps[model], start + r.duration)
        hold = held.get(r.id)
        if hold is not None:
            basis = "held GPUs; the rest from the declared ends on " + (hold.gpus[0].node if hold.gpus else "one node")
            result.append(Estimate(r.id, position, hold.completes, basis))
        elif start <= now:
            result.append(Estimate(r.id, position, now, "GPUs free now"))
        else:
            result.append(Estimate(r.id, position, start,
                                   f"declared ends of current grants, after {position - 1} request(s) ahead"))
    return result


def allocate(requests: Sequence[Request], gpus: Sequence[GpuFact], usage: Mapping[str, Decimal], now: datetime,
             policy: Policy, claims: Collection[int] = ()) -> Decisions:
    """The tick's decisions for the live ``requests`` given the GPUs' last facts (module docstring).
    ``usage`` is the decayed GPU charge per entity (``priority.entity``); ``claims`` the request ids whose
    users ran ``gpu-request --claim`` since the last tick."""
    facts = {f.ref: f for f in gpus}
    grants, ends, live = _settle(requests, facts, claims, now)
    holder: dict[GpuRef, Request] = {g: r for r in live if r.state is not State.QUEUED for g in r.gpus}
    in_use: Counter[str] = Counter()
    for r in live:
        if r.state is not State.QUEUED:
            _use(r, in_use, len(r.gpus))
    free = {ref for ref, f in facts.items() if ref not in holder and not f.busy}
    availability: dict[GpuRef, datetime | None] = dict.fromkeys(free, now)
    for ref, f in facts.items():
        if ref in holder:
            availability[ref] = _available_at(holder[ref])
        elif f.busy:
            availability[ref] = None  # used without a grant: nobody declared when it ends
    pools = _Pools(free)
    queued = order([r for r in live if r.state is State.QUEUED], usage, now, policy)
    offers, holds = [], {}
    blocked: list[frozenset[str]] = []
    for r in queued:
        if not _caps_allow(r, in_use, policy):
            continue
        fit = pools.fit(r, now)
        if fit is not None:
            pools.take(fit)
            offers.append(Offer(r.id, fit, now + timedelta(seconds=policy.offer_s)))
            _use(r, in_use, r.count)
            continue
        if r.count > 1 and not any(_overlaps(key, r.models) for key in blocked):
            hold = pools.hold(r, availability, now)
            if hold is not None:
                holds[r.id] = hold
        blocked.append(r.models)
    kept_holds = {rid: Hold(rid, tuple(g for g in h.gpus if pools.held.get(g) is h), h.completes)
                  for rid, h in holds.items()}
    offered = {o.request_id for o in offers}
    waiting = [r for r in queued if r.id not in offered]
    return Decisions(offers=tuple(offers), grants=tuple(grants), holds=tuple(kept_holds.values()),
                     ends=tuple(ends), estimates=tuple(_estimates(waiting, availability, kept_holds, now)))
