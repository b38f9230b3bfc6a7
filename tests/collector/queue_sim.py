"""A simulated lab for the GPU queue, with ground truth: nodes of GPUs, users who file requests with declared
hours, claim offers by starting a process (or never do), run until their lease ends or release early; faults
(a node's sample missing, a process nobody can map on a free GPU) and controller crashes (a tick's transaction
lost) between ticks. Every tick goes through ``control.queue.tick.run`` on the real database, so the state is
persisted and reloaded each tick; ``check`` asserts the invariants against what the database holds."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import Engine, text

from control.queue import priority, store
from control.queue.records import GpuFact, GpuRef, Policy, Request, State
from control.queue.tick import Op, run

T0 = datetime(2026, 12, 2, 0, 0, tzinfo=UTC)
TICK = timedelta(minutes=1)
POLICY = Policy(offer_s=180, default_hours=Decimal("0.1"), share_boost_hours=Decimal("0.5"),
                max_gpus_per_user=4, max_gpus_per_project=6, max_queued_per_user=3)


@dataclass(frozen=True)
class Arrival:
    """A request some user files at some tick, and how its user behaves when offered GPUs."""

    tick: int
    user: int
    count: int
    model: str | None
    minutes: int
    claims_after: int | None  # ticks after the offer; None: never claims
    releases_after: int | None = None  # ticks after the grant; None: runs to the lease's end


@dataclass(frozen=True)
class Fault:
    tick: int
    ticks: int
    node: int
    kind: str  # "missing" (no sample of the node) or "intruder" (an unmappable process on its GPU 0)


@dataclass
class Lab:
    engine: Engine
    nodes: tuple[tuple[str, ...], ...]  # per node, the model of each GPU
    users: int
    policy: Policy = POLICY
    now: datetime = T0
    tick_no: int = 0
    filed: dict[str, Arrival] = field(default_factory=dict)  # nonce -> arrival
    offered_at: dict[int, datetime] = field(default_factory=dict)
    granted_at: dict[int, datetime] = field(default_factory=dict)
    ended: dict[int, tuple[object, ...]] = field(default_factory=dict)
    usage: Counter[str] = field(default_factory=Counter)
    fault_ticks: int = 0
    crashes: int = 0

    def user(self, n: int) -> str:
        return f"u{n}"

    def project(self, n: int) -> str | None:
        return "lab" if n % 3 == 0 else None

    def gpus(self) -> list[GpuRef]:
        return [GpuRef(f"n{i}", j, m) for i, models in enumerate(self.nodes) for j, m in enumerate(models)]

    def _facts(self, live: list[Request], faults: list[Fault]) -> list[GpuFact]:
        running: dict[GpuRef, set[str]] = {}
        for r in live:
            arrival = self._arrival(r)
            claimed = (r.state is State.OFFERED and arrival.claims_after is not None
                       and self.now >= self.offered_at[r.id] + arrival.claims_after * TICK)
            if r.state is State.GRANTED or claimed:
                for g in r.gpus:
                    running.setdefault(g, set()).add(r.user)
        missing = {f"n{f.node}" for f in faults if f.kind == "missing"}
        intruded = {GpuRef(f"n{f.node}", 0, self.nodes[f.node][0]) for f in faults if f.kind == "intruder"}
        return [GpuFact(g, frozenset(running.get(g, ())), g in intruded) for g in self.gpus() if g.node not in missing]

    def _arrival(self, r: Request) -> Arrival:
        nonce = self.engine_nonce(r.id)
        return self.filed[nonce]

    def engine_nonce(self, request_id: int) -> str:
        with self.engine.begin() as conn:
            return str(conn.execute(text("SELECT nonce FROM control.queue_request WHERE id = :i"),
                                    {"i": request_id}).scalar_one())

    def _ops(self, arrivals: list[Arrival], live: list[Request]) -> list[Op]:
        ops = []
        for a in arrivals:
            nonce = f"sim-{len(self.filed):06d}-nonce-{a.user}"
            self.filed[nonce] = a
            body = {"op": "request", "nonce": nonce, "models": [a.model] if a.model else [], "count": a.count,
                    "hours": str(Decimal(a.minutes) / 60), "node": None, "run": False}
            ops.append(Op(self.user(a.user), self.project(a.user), body, "n0", 2000 + a.user))
        for r in live:
            a = self._arrival(r)
            if (r.state is State.GRANTED and a.releases_after is not None
                    and self.now >= self.granted_at[r.id] + a.releases_after * TICK):
                ops.append(Op(r.user, r.project, {"op": "release", "id": r.id, "nonce": f"rel-{r.id:012d}x"}))
        return ops

    def tick(self, arrivals: list[Arrival], faults: list[Fault], crash: bool = False) -> None:
        """One tick; with ``crash`` the tick's transaction is lost (the controller died before its commit) and
        the engine is thrown away, as a restarted controller starts with nothing in memory."""
        with self.engine.begin() as conn:
            live = store.load(conn)
        facts = self._facts(live, faults)
        ops = self._ops(arrivals, live)
        usage = {k: Decimal(v) for k, v in self.usage.items()}
        conn = self.engine.connect()
        transaction = conn.begin()
        result = run(conn, ops, facts, {}, self.policy, self.now, usage)
        if crash:
            transaction.rollback()
            conn.close()
            self.engine.dispose()
            self.crashes += 1
            for a in arrivals:  # the user's files were read and lost with the tick: they file again
                self.filed = {n: x for n, x in self.filed.items() if x is not a}
            return
        transaction.commit()
        conn.close()
        self.fault_ticks += bool(faults)
        self.check(result.decisions, live, facts)
        self.now += TICK
        self.tick_no += 1

    def check(self, decisions: object, before: list[Request], facts: list[GpuFact]) -> None:
        with self.engine.begin() as conn:
            live = store.load(conn)
            rows = conn.execute(text("SELECT id, state, granted_at, ends, ended_at, reason FROM"
                                     " control.queue_request WHERE state IN ('ended', 'refused')")).all()
            held = conn.execute(text("SELECT node, gpu_index, count(*) FROM control.queue_gpu"
                                     " WHERE released_at IS NULL GROUP BY 1, 2 HAVING count(*) > 1")).all()
        assert held == [], f"a GPU is live for two requests: {held}"
        seen: set[GpuRef] = set()
        per_user: Counter[str] = Counter()
        per_project: Counter[str] = Counter()
        for r in live:
            assert not (set(r.gpus) & seen), "a GPU granted twice"
            seen |= set(r.gpus)
            assert all(r.matches(g) for g in r.gpus)
            if r.state is not State.QUEUED:
                assert len(r.gpus) == r.count
                per_user[r.user] += r.count
                if r.project:
                    per_project[r.project] += r.count
                self.offered_at.setdefault(r.id, self.now)
            if r.state is State.OFFERED:
                assert r.offer_expires is not None and r.offer_expires > self.now, "an offer outlived its expiry"
            if r.state is State.GRANTED:
                self.granted_at.setdefault(r.id, self.now)
                assert r.ends is not None and r.ends > self.now
                self.usage[priority.entity(r)] += r.count
        assert max(per_user.values(), default=0) <= self.policy.max_gpus_per_user
        assert max(per_project.values(), default=0) <= self.policy.max_gpus_per_project
        for row in rows:
            frozen = tuple(row)
            assert self.ended.setdefault(row.id, frozen) == frozen, "an ended request changed"
        self._check_order(before, facts, live)

    def _check_order(self, before: list[Request], facts: list[GpuFact], after: list[Request]) -> None:
        """No queued request was passed over for GPUs it could have used: a newly offered L and a queued H
        ahead of it in the order, whose user held nothing, that matches L's GPUs, asks for no more of them and
        no longer a lease, must have been offered too."""
        queued = [r for r in before if r.state is State.QUEUED]
        ranked = priority.order(queued, {k: Decimal(v) for k, v in self.usage.items()}, self.now, self.policy)
        state = {r.id: r for r in after}
        busy_users = {r.user for r in before if r.state is not State.QUEUED}
        for i, low in enumerate(ranked):
            now_low = state.get(low.id)
            if now_low is None or now_low.state is State.QUEUED:
                continue
            for high in ranked[:i]:
                now_high = state.get(high.id)
                if now_high is None or now_high.state is not State.QUEUED or high.user in busy_users:
                    continue
                if high.user == low.user or high.hours > low.hours or high.count > len(now_low.gpus):
                    continue
                if all(high.matches(g) for g in now_low.gpus):
                    raise AssertionError(f"request {high.id} was passed over for {low.id}")

    def waits(self) -> dict[int, timedelta]:
        """request id -> how long it waited for its first offer (still waiting: until now)."""
        with self.engine.begin() as conn:
            rows = conn.execute(text("SELECT id, created_at, state, reason FROM control.queue_request")).all()
        return {r.id: self.offered_at.get(r.id, self.now) - r.created_at for r in rows
                if r.state != "refused" and not (r.id not in self.offered_at and r.reason == "released")}

