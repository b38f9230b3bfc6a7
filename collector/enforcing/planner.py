"""Convergent enforcement: compare desired with actual per uid and plan only the differences.

Facts come from the node command's read verbs (``quota-get``, ``gpu-state``) through the pure parsers
here; the plan is a tuple of ``Action``s (node-command verbs) or empty, which is the declared no-op. A
second plan against the state the first one produced is empty: the quota comparison allows for the
node's documented downward rounding (docs/node-command.md), so a quota the node rounded is not re-set.
A restriction in place but with processes of the user outside it (a session the node's PAM hook missed)
is applied again, which moves them in: the miss is closed within one tick.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from collector.enforcing.decisions import Desired, ProcessRef

# The verbs that put a restriction in place and those that lift one: the decision log reads the latest of
# each to know which (node, uid) pairs the controller holds restricted.
RESTRICTING = frozenset({"quota-set", "gpu-block"})
LIFTING = frozenset({"quota-clear", "gpu-unblock"})


@dataclass(frozen=True)
class Actual:
    """What a node reports for one uid."""

    uid: int
    cpu_quota_ppm: int | None
    gpu_blocked: bool
    quota_outside: int = 0  # the uid's processes outside the quota group (0 without a quota)
    gpu_outside: int = 0  # ... outside the device block (0 when not blocked)
    # While blocked: the masked GPU minors of a ``--minors`` block, None for the whole block (or a node command
    # too old to say, which only had the whole block).
    gpu_minors: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Action:
    """One node-command verb to run for a reason (in dry-run it is only recorded)."""

    node: str
    uid: int
    verb: tuple[str, ...]
    reason: str
    stdin: bytes = b""

    @property
    def kind(self) -> str:
        return self.verb[0]


class FactError(ValueError):
    """A read verb's output could not be understood; ``output`` is what came back (for the record)."""

    def __init__(self, verb: str, problem: str, output: bytes) -> None:
        super().__init__(f"{verb}: {problem}")
        self.verb = verb
        self.problem = problem
        self.output = output[:2000]


def _document(verb: str, stdout: bytes) -> dict[str, object]:
    try:
        document = json.loads(stdout)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FactError(verb, f"not JSON: {exc}", stdout) from None
    if not isinstance(document, dict) or document.get("ok") is not True:
        raise FactError(verb, "not a successful result document", stdout)
    return document


def parse_quota(stdout: bytes) -> int | None:
    """``quota-get``'s current quota in ppm of the node's CPUs (``None`` = no quota)."""
    document = _document("quota-get", stdout)
    holder = document.get("after", document)
    value = holder.get("quota_ppm") if isinstance(holder, dict) else None
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise FactError("quota-get", f"quota_ppm {value!r} is not a non-negative integer", stdout)
    return value


def parse_gpu_state(stdout: bytes) -> bool:
    """``gpu-state``'s answer: whether new GPU use is blocked for the uid."""
    blocked = _document("gpu-state", stdout).get("blocked")
    if not isinstance(blocked, bool):
        raise FactError("gpu-state", f"blocked {blocked!r} is not a boolean", stdout)
    return blocked


def parse_denied_minors(stdout: bytes) -> tuple[int, ...] | None:
    """``gpu-state``'s ``denied_minors``: the masked minors, sorted, or None for ``"all"`` (and when absent)."""
    value = _document("gpu-state", stdout).get("denied_minors", "all")
    if value == "all":
        return None
    if not isinstance(value, list) or not all(isinstance(m, int) and not isinstance(m, bool) and 0 <= m <= 253
                                              for m in value):
        raise FactError("gpu-state", f"denied_minors {str(value)[:80]} is neither 'all' nor a list of minors",
                        stdout)
    return tuple(sorted(set(value)))


def parse_outside(verb: str, stdout: bytes) -> int:
    """How many of the uid's processes the restriction a read verb reports does not hold (0 from a node
    command older than the field, which could not say)."""
    document = _document(verb, stdout)
    value = document.get("outside", 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise FactError(verb, f"outside {value!r} is not a non-negative integer", stdout)
    return value


def quota_matches(desired_ppm: int, actual_ppm: int, cpus: int) -> bool:
    """Whether the node's read-back equals what a ``quota-set`` of ``desired_ppm`` leaves behind.

    The node rounds down twice (to whole percent of one CPU for systemd, to microseconds per period for
    cgroupfs) and reads back with a floor, so the read-back may sit below the request by less than one
    percent of one CPU (``10000 / cpus`` ppm) and is never above it.
    """
    step = -(-10000 // max(cpus, 1))
    return desired_ppm - step < actual_ppm <= desired_ppm


def plan(node: str, desired: Desired, actual: Actual, cpus: int) -> tuple[Action, ...]:
    """The verbs that move ``actual`` to ``desired`` on ``node``; empty when nothing differs."""
    uid, reason = str(desired.uid), desired.reason
    actions: list[Action] = []
    if desired.cpu_quota_ppm is None:
        if actual.cpu_quota_ppm is not None:
            actions.append(Action(node, desired.uid, ("quota-clear", uid), reason))
    elif actual.cpu_quota_ppm is None or not quota_matches(desired.cpu_quota_ppm, actual.cpu_quota_ppm, cpus):
        actions.append(Action(node, desired.uid, ("quota-set", uid, str(desired.cpu_quota_ppm)), reason))
    elif actual.quota_outside:
        actions.append(Action(node, desired.uid, ("quota-set", uid, str(desired.cpu_quota_ppm)),
                              f"{reason}, {actual.quota_outside} process(es) outside the quota"))
    actions.extend(_gpu_actions(node, desired, actual, reason))
    actions.extend(Action(node, desired.uid, _kill(p, uid), f"{reason}, kill grace over") for p in desired.kill)
    actions.extend(Action(node, desired.uid, _kill(p, uid), "GPU used without a grant past the grace while others wait")
                   for p in desired.ungranted_kill if p not in desired.kill)
    return tuple(actions)


def _kill(process: ProcessRef, uid: str) -> tuple[str, ...]:
    return ("kill", process.boot_id, str(process.pid), str(process.start_ticks), uid)


def _gpu_actions(node: str, desired: Desired, actual: Actual, reason: str) -> list[Action]:
    """The tier's whole block wins over the queue's mask of others' granted GPUs (``gpu-block UID --minors``);
    a new block replaces the node's mask, so one verb moves between the two."""
    uid = str(desired.uid)
    if desired.gpu_blocked:
        verb: tuple[str, ...] = ("gpu-block", uid)
        wanted: tuple[int, ...] | None = None
    elif desired.gpu_masked:
        verb = ("gpu-block", uid, "--minors", ",".join(map(str, desired.gpu_masked)))
        wanted = desired.gpu_masked
        reason = f"GPU(s) {verb[3]} granted to others, {reason}"
    else:
        return [Action(node, desired.uid, ("gpu-unblock", uid), reason)] if actual.gpu_blocked else []
    if not actual.gpu_blocked or actual.gpu_minors != wanted:
        return [Action(node, desired.uid, verb, reason)]
    if actual.gpu_outside:
        return [Action(node, desired.uid, verb, f"{reason}, {actual.gpu_outside} process(es) outside the GPU block")]
    return []
