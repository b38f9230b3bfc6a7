"""Ground-truth CPU work on a VM node: one busy loop per test user, each in a NEW ssh session, and ``cpu.stat``.

The test user is the one a quota limits; the control user runs the same loop at the same moment, so a test compares
the two instead of holding a TCG guest on a busy host to an absolute share.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pytest

from tests.harness.vm import VmNode
from tests.vm.install import node_command

TEST_UID, CONTROL_UID = 1000, 1001
USERS = {TEST_UID: "gltest", CONTROL_UID: "glcontrol"}
BUSY = "exec timeout {seconds} sh -c 'while :; do :; done'"
# cron starts jobs on the minute: a job put in now has run within two.
CRON_WAIT_S = 150.0
CRON_MARK = "/tmp/gl-cron-cgroup"


def verb(node: VmNode, words: str) -> dict[str, Any]:
    """A node-command verb's document, which must say ``ok``."""
    document: dict[str, Any] = json.loads(node_command(node, words).stdout)
    assert document["ok"] is True, document
    return document


def user_slice(uid: int) -> str:
    return f"/sys/fs/cgroup/user.slice/user-{uid}.slice"


def cpu_stat(node: VmNode, group: str) -> dict[str, int]:
    text = node.ssh("root", f"cat {group}/cpu.stat").stdout
    return {key: int(value) for key, value in (line.split() for line in text.splitlines())}


@contextmanager
def busy_sessions(node: VmNode, seconds: int) -> Iterator[None]:
    """One NEW ssh session per test user, each running a busy loop until ``seconds`` pass or the block ends."""
    loops = [
        subprocess.Popen(node.ssh_argv(user, BUSY.format(seconds=seconds), fresh=True), stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for user in USERS.values()
    ]
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            running = node.ssh("root", "pgrep -c -x sh -u gltest; pgrep -c -x sh -u glcontrol", check=False).stdout
            if running.split() == ["1", "1"]:
                break
            time.sleep(1)
        else:
            pytest.fail("the busy loops did not start")
        yield
    finally:
        for loop in loops:
            loop.terminate()
            loop.wait(timeout=30)
        node.ssh("root", "pkill -u gltest -x timeout; pkill -u glcontrol -x timeout; true", check=False)


@contextmanager
def cron_job(node: VmNode, user: str) -> Iterator[str]:
    """A crontab entry of ``user`` whose job records its cgroup and then sleeps; yields that cgroup (``/...``)
    while the job's sleep still runs. The crontab and the sleep are gone afterwards."""
    node.ssh("root", f"rm -f {CRON_MARK} && crontab -u {user} -",
             stdin=f"* * * * * cat /proc/self/cgroup > {CRON_MARK}; exec sleep 300\n".encode())
    try:
        deadline = time.monotonic() + CRON_WAIT_S
        while node.ssh("root", f"test -s {CRON_MARK}", check=False).returncode != 0:
            assert time.monotonic() < deadline, "cron did not run the job"
            time.sleep(5)
        line = node.ssh("root", f"cat {CRON_MARK}").stdout.strip()
        assert line.startswith("0::"), line
        yield line[3:]
    finally:
        node.ssh("root", f"crontab -u {user} -r; pkill -u {user} -x sleep; rm -f {CRON_MARK}; true", check=False)


def window(node: VmNode, seconds: float, groups: Mapping[int, str] | None = None) -> dict[int, dict[str, int]]:
    """Each user's ``cpu.stat`` growth over the same ``seconds``, read back to back; ``groups`` names the cgroup
    each uid's loop is in (default: its user slice)."""
    where = {uid: user_slice(uid) for uid in USERS} | dict(groups or {})
    before = {uid: cpu_stat(node, where[uid]) for uid in USERS}
    time.sleep(seconds)
    after = {uid: cpu_stat(node, where[uid]) for uid in USERS}
    return {uid: {key: after[uid][key] - before[uid].get(key, 0) for key in after[uid]} for uid in USERS}
