"""What this tick's samples say of each GPU, as the queue reads it (docs/queue.md, "Grants", "Idle-held GPUs"):
who has compute processes on it (billing users) and whether it is held idle. Pure.

A process whose uid is unknown, or whose Linux user bills to nobody, makes its GPU ``unknown_use``: never free
(fail closed). Root's processes are the driver's helpers (nvidia-persistenced, Xorg hold every GPU of a node
all day), so they do not make a GPU busy, as in ``collector.nodes.gpuactivity``. Utilization never decides
ownership; it only tells a held GPU's idleness."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from collector.charging.samples import Sample
from collector.enforcing.decisions import ProcessRef
from control.queue.records import GpuFact, GpuRef

# A holder's processes with at least this much memory at 0 % utilization hold the GPU idle; less is a process
# that merely initialised CUDA (a context alone takes a few hundred MiB).
IDLE_MIN_MEMORY = 1 << 30
_VENDOR = re.compile(r"^(nvidia[\s_-]+)?(geforce[\s_-]+|tesla[\s_-]+|quadro[\s_-]+)?", re.IGNORECASE)


def pool_model(name: str | None) -> str:
    """The pool key of an NVML device name, in the form users type it (``gpu-request --model``): lower case,
    without the vendor and brand words, runs of other characters as one ``-``: "NVIDIA GeForce RTX 3090" is
    ``rtx-3090``, "NVIDIA A100-SXM4-80GB" ``a100-sxm4-80gb``."""
    bare = _VENDOR.sub("", (name or "").strip())
    slug = re.sub(r"[^a-z0-9.]+", "-", bare.lower()).strip("-.")
    return slug[:64] or "unknown"


@dataclass(frozen=True)
class NodeFacts:
    facts: tuple[GpuFact, ...]
    idle: Mapping[GpuRef, bool]


def node_facts(node: str, sample: Sample, billing: Mapping[tuple[str, str], str]) -> NodeFacts:
    """``billing``: (node, Linux user) -> billing user (``ledger.directory.resolve``)."""
    users: dict[str, set[str]] = {}
    unknown: set[str] = set()
    memory: dict[str, int] = {}
    for p in sample.gpu_processes:
        if p.uid == 0:
            continue
        user = billing.get((node, p.user)) if p.user else None
        if p.uid is None or user is None:
            unknown.add(p.gpu_uuid)
        else:
            users.setdefault(p.gpu_uuid, set()).add(user)
            memory[p.gpu_uuid] = memory.get(p.gpu_uuid, 0) + (p.used_memory_bytes or 0)
    facts, idle = [], {}
    for gpu in sample.gpus:
        ref = GpuRef(node, gpu.index, pool_model(gpu.name))
        facts.append(GpuFact(ref, frozenset(users.get(gpu.uuid, ())), gpu.uuid in unknown))
        # Unreadable utilization counts as busy, so a driver fault never paints a holder idle.
        idle[ref] = (gpu.uuid in users and gpu.utilization_percent == 0
                     and memory.get(gpu.uuid, 0) >= IDLE_MIN_MEMORY)
    return NodeFacts(tuple(facts), idle)


def linux_users(node: str, sample: Sample) -> dict[tuple[str, int], str]:
    """(node, uid) -> Linux user name of every named process on the node (where a queue answer can go)."""
    names = {(node, p.uid): p.user for p in sample.processes if p.user}
    names.update({(node, p.uid): p.user for p in sample.gpu_processes if p.uid is not None and p.user})
    return names


@dataclass(frozen=True)
class Ungranted:
    """A process of ``user`` on a GPU the queue has not granted (or offered) to them. ``process`` is None when the
    sample does not identify it well enough for a PID-reuse-safe kill."""

    node: str
    uid: int
    linux_user: str
    user: str
    gpu: GpuRef
    process: ProcessRef | None


def ungranted(node: str, sample: Sample, billing: Mapping[tuple[str, str], str],
              held: Mapping[int, str]) -> list[Ungranted]:
    """Every mapped user's GPU process on ``node`` that is not on a GPU ``held`` for them (minor -> holder).
    Root's and unmappable processes are nobody to warn; they already keep the GPU from being offered."""
    gpus = {g.uuid: GpuRef(node, g.index, pool_model(g.name)) for g in sample.gpus}
    by_pid = {p.pid: p for p in sample.processes}
    found = []
    for p in sample.gpu_processes:
        ref = gpus.get(p.gpu_uuid)
        user = billing.get((node, p.user)) if p.user else None
        if ref is None or p.uid is None or p.uid == 0 or p.user is None or user is None or held.get(ref.index) == user:
            continue
        listed = by_pid.get(p.pid)
        start = p.start_ticks if p.start_ticks is not None else (listed.start_ticks if listed else None)
        process = ProcessRef(sample.boot_id, p.pid, start) if start is not None else None
        found.append(Ungranted(node, p.uid, p.user, user, ref, process))
    return found
