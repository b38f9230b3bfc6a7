"""What the SSH hook adds to a login and to a wrapped GPU command. Run as root from the repository root:

    .venv/bin/python -m bench.hook [--runs 200]

Creates a throwaway user (glh-bench) and installs the hook in private mount namespaces (tests/hooks/node.py),
so the machine's /etc is untouched. Prints a table of medians and 90th percentiles in milliseconds:

* whole interactive login shells (``bash -l -i`` on a pty) with and without the hook, alternated, and the
  difference of their medians: the number the <= 20 ms budget is about;
* the hook alone, sourced inside a running login shell, timed with bash's $EPOCHREALTIME;
* a wrapped ``python3 -c pass`` against ``command python3 -c pass`` in the same shell.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from tests.hooks.node import ENV, HookNode, create_user, remove_user, status_fields

USER = "glh-bench"


def _pty_run(argv: list[str]) -> tuple[float, str]:
    """Runs ``argv`` with a pty as its controlling terminal; returns (seconds, what it wrote)."""
    master, slave = os.openpty()
    started = time.perf_counter()
    process = subprocess.Popen(["setsid", "--ctty", *argv], stdin=slave, stdout=slave, stderr=slave, env=ENV)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO once the shell has gone
            break
        if not chunk:
            break
        chunks.append(chunk)
    process.wait()
    elapsed = time.perf_counter() - started
    os.close(master)
    return elapsed, b"".join(chunks).decode(errors="replace").replace("\r", "")


def _login_shell(uid: int, gid: int, script: str) -> list[str]:
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--init-groups", "--reset-env",
            "bash", "-l", "-i", "-c", script]


def _stats(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(0.9 * (len(ordered) - 1))]


def _in_shell(node: HookNode, argv: list[str], runs: int) -> list[float]:
    """Durations (s) that a login shell measured itself: lines "T <start> <end>" from $EPOCHREALTIME."""
    _, output = _pty_run(node.argv(argv))
    samples = [float(end) - float(start) for tag, start, end in
               (line.split() for line in output.splitlines() if line.startswith("T ")) if tag == "T"]
    if len(samples) != runs:
        raise RuntimeError(f"expected {runs} timings, got {len(samples)}:\n{output[-2000:]}")
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200)
    runs = parser.parse_args().runs
    if os.geteuid() != 0:
        print("bench/hook.py needs root (test user, mount namespaces)", file=sys.stderr)
        return 2
    user = create_user(USER)
    node = HookNode()
    try:
        node.status.write(user.pw_uid, status_fields(user))
        login = _login_shell(user.pw_uid, user.pw_gid, "exit")
        timings: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(5):  # warm the page cache for both
            for hooked in (True, False):
                _pty_run(node.argv(login, hooked=hooked))
        for _ in range(runs):
            for hooked in (True, False):
                timings[hooked].append(_pty_run(node.argv(login, hooked=hooked))[0])
        sourced = _in_shell(node, _login_shell(user.pw_uid, user.pw_gid, (
            f"for i in {{1..{runs}}}; do unset _gpuledger_loaded; s=$EPOCHREALTIME; "
            ". /etc/profile.d/gpuledger.sh 2>/dev/null; e=$EPOCHREALTIME; echo T $s $e; done")), runs)
        wrapper_runs = max(runs // 4, 10)
        wrapped, direct = (_in_shell(node, _login_shell(user.pw_uid, user.pw_gid, (
            f"for i in {{1..{wrapper_runs}}}; do s=$EPOCHREALTIME; {prefix}python3 -c pass; e=$EPOCHREALTIME; "
            "echo T $s $e; done")), wrapper_runs) for prefix in ("", "command "))
    finally:
        node.remove()
        remove_user(USER)
    rows = [
        ("login shell, no hook", runs, *_stats(timings[False])),
        ("login shell, hook (tier normal)", runs, *_stats(timings[True])),
        ("hook sourced in a running shell", runs, *_stats(sourced)),
        ("python3 -c pass, unwrapped", wrapper_runs, *_stats(direct)),
        ("python3 -c pass, wrapped", wrapper_runs, *_stats(wrapped)),
    ]
    print(f"{'measurement':<36} {'runs':>5} {'median ms':>10} {'p90 ms':>8}")
    for name, count, median, p90 in rows:
        print(f"{name:<36} {count:>5} {median * 1000:>10.2f} {p90 * 1000:>8.2f}")
    added = (statistics.median(timings[True]) - statistics.median(timings[False])) * 1000
    print(f"{'added to a login (median difference)':<36} {'':>5} {added:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
