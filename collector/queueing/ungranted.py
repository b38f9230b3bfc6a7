"""GPUs used without a grant while the queue is on (docs/queue.md, "Enforcement"), per pool level: 0 recorded
(logged), 1 the user warned once, 2 warned and, only while a queued request could use that GPU, the process
killed once it has run ``grace_s`` without a grant (through the converger's PID-reuse-safe ``kill``, so
dry-run and exemptions apply there). Level 1 needs nothing more to make the GPU unallocatable: a GPU with
someone's process on it is never free (control.queue.allocator)."""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from collector.enforcing.decisions import ProcessRef
from collector.enforcing.notices import QueueNotice
from collector.queueing.facts import Ungranted
from collector.types import QueueSettings
from control.queue.records import Request, State

log = logging.getLogger("gpuledger.controller")
Key = tuple[str, int, int, ProcessRef | None]  # node, uid, GPU minor, process


@dataclass(frozen=True)
class Verdict:
    """The lines to send, each to the (node, uid) it concerns, and the processes to kill per node and uid."""

    notices: tuple[tuple[str, int, QueueNotice], ...]
    kills: dict[str, dict[int, tuple[ProcessRef, ...]]]


class UngrantedUse:
    """Remembers since when each ungranted use was seen and which were warned (in memory: a restart starts
    the grace again, the safe direction)."""

    def __init__(self, settings: QueueSettings) -> None:
        self._settings = settings
        self._since: dict[Key, datetime] = {}
        self._warned: set[Key] = set()

    def assess(self, found: Sequence[Ungranted], live: Sequence[Request], exempt: Collection[str],
               now: datetime) -> Verdict:
        seen: dict[Key, datetime] = {}
        notices: list[tuple[str, int, QueueNotice]] = []
        kills: dict[str, dict[int, set[ProcessRef]]] = {}
        queued = [r for r in live if r.state is State.QUEUED]
        for use in found:
            key = (use.node, use.uid, use.gpu.index, use.process)
            since = seen[key] = self._since.get(key, now)
            level = self._settings.level(use.gpu.model)
            if key not in self._since:  # recorded once per use, not every tick
                log.info("gpu queue: %s (%s) uses %s GPU %d without a grant (level %d)", use.linux_user, use.user,
                         use.node, use.gpu.index, level)
            if use.user in exempt or level == 0:
                continue
            waiting = sum(1 for r in queued if r.matches(use.gpu))
            kill_at = since + timedelta(seconds=self._settings.grace_s)
            if key not in self._warned:
                self._warned.add(key)
                text = (f"GPU {use.gpu.index} on {use.node} is not granted to you; ask with gpu-request.")
                if level == 2:
                    text += (f" While others wait for it your process there (PID "
                             f"{use.process.pid if use.process else '?'}) is stopped at {kill_at:%H:%M UTC}.")
                notices.append((use.node, use.uid, QueueNotice(use.user, "ungranted_use", text)))
            if level == 2 and waiting and now >= kill_at and use.process is not None:
                kills.setdefault(use.node, {}).setdefault(use.uid, set()).add(use.process)
        self._since = seen
        self._warned &= seen.keys()
        return Verdict(tuple(notices), {node: {uid: tuple(sorted(refs, key=lambda r: r.pid))
                                               for uid, refs in per.items()} for node, per in kills.items()})
