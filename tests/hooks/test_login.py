"""What an SSH user sees at login, for every tier and every way the status file can be wrong."""

from __future__ import annotations

import os
import pwd
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.hooks.node import ENV, HookNode, status_fields, write_rc
from tests.hooks.terminal import PROMPT, Terminal

HINT = "Ask your PI or write to gpu-admin@lab.example to recharge."


def _login(terminal: Callable[..., Terminal], user: pwd.struct_passwd) -> tuple[str, Terminal]:
    shell = terminal(user)
    return shell.login(), shell


def _local_time(epoch: int) -> str:
    env = {key: value for key, value in ENV.items() if key != "TZ"}
    return subprocess.run(["date", "-d", f"@{epoch}", "+%Y-%m-%d %H:%M %Z"], capture_output=True, text=True,
                          check=True, env=env).stdout.strip()


def test_normal_tier_shows_balance_burn_rate_and_time_to_empty(node: HookNode, alice: pwd.struct_passwd,
                                                               terminal: Callable[..., Terminal]) -> None:
    node.status.write(alice.pw_uid, status_fields(alice))
    banner, _ = _login(terminal, alice)
    assert banner == (
        "gpuledger: balance 123.45 CNY, tier normal\n"
        "  spending 2.50 CNY/hour over the last hour; about 49.4 hours until GPU access is blocked\n"
    )


def test_warning_tier_shows_notice_and_how_to_recharge(node: HookNode, alice: pwd.struct_passwd,
                                                       terminal: Callable[..., Terminal]) -> None:
    node.status.write(alice.pw_uid, status_fields(
        alice, tier="warning", balance="8.420000", burn_rate_per_hour="1.200000", time_to_empty_hours="7.0",
        notice="Your balance is below 10 CNY.", billing_user="proj-vision"))
    banner, _ = _login(terminal, alice)
    assert banner == (
        "gpuledger: balance 8.42 CNY (charged to proj-vision), tier warning\n"
        "  spending 1.20 CNY/hour over the last hour; about 7.0 hours until GPU access is blocked\n"
        "  Your balance is running low.\n"
        "  Notice: Your balance is below 10 CNY.\n"
        f"  To recharge: {HINT}\n"
    )


def test_limited_tier_shows_refusal_cpu_quota_and_kill_time(node: HookNode, alice: pwd.struct_passwd,
                                                           terminal: Callable[..., Terminal]) -> None:
    kill_at = int(time.time()) + 1800
    node.status.write(alice.pw_uid, status_fields(
        alice, tier="limited", balance="0.300000", burn_rate_per_hour="0.000000", time_to_empty_hours="",
        cpu_quota_percent="10", kill_at=kill_at, notice="Out of credit."))
    banner, _ = _login(terminal, alice)
    assert banner == (
        "gpuledger: balance 0.30 CNY, tier limited\n"
        "  spending 0.00 CNY/hour over the last hour\n"
        "  New GPU jobs are refused in this shell until you recharge.\n"
        "  Your CPU use is limited to 10% of this node's CPUs.\n"
        f"  Your GPU processes will be stopped at {_local_time(kill_at)}: save your work now.\n"
        "  Notice: Out of credit.\n"
        f"  To recharge: {HINT}\n"
    )


def test_blocked_tier_says_gpu_access_is_blocked(node: HookNode, alice: pwd.struct_passwd,
                                                 terminal: Callable[..., Terminal]) -> None:
    node.status.write(alice.pw_uid, status_fields(
        alice, tier="blocked", balance="-1.250000", burn_rate_per_hour="", time_to_empty_hours="", gpu_blocked=1))
    banner, _ = _login(terminal, alice)
    assert banner == (
        "gpuledger: balance -1.25 CNY, tier blocked\n"
        "  Your balance is used up.\n"
        "  GPU access is blocked on this node: new processes cannot open a GPU.\n"
        f"  To recharge: {HINT}\n"
    )


def test_banner_is_printed_once_although_the_hook_is_sourced_twice(
        node: HookNode, alice: pwd.struct_passwd, terminal: Callable[..., Terminal]) -> None:
    # A login shell reads /etc/bash.bashrc (from /etc/profile) and /etc/profile.d; users' rc files often
    # source /etc/bash.bashrc once more.
    write_rc(alice, ". /etc/bash.bashrc\n" + Path("/etc/skel/.bashrc").read_text() + f"PS1='{PROMPT}'\n")
    node.status.write(alice.pw_uid, status_fields(alice))
    banner, shell = _login(terminal, alice)
    assert banner.count("gpuledger: balance") == 1
    assert shell.type("bash -i -c 'type -t python3'") == "function\n"  # a child interactive shell loads it anew


def _user_writable(path: Path, user: pwd.struct_passwd) -> None:
    os.chmod(path, 0o666)


def _group_writable(path: Path, user: pwd.struct_passwd) -> None:
    os.chmod(path, 0o664)


def _owned_by_user(path: Path, user: pwd.struct_passwd) -> None:
    os.chown(path, user.pw_uid, user.pw_gid)


def _symlink(path: Path, user: pwd.struct_passwd) -> None:
    # Even to a root-owned, well-formed file: the status file is never reached through a symlink.
    target = path.with_name("elsewhere")
    path.rename(target)
    path.symlink_to(target)


def _directory(path: Path, user: pwd.struct_passwd) -> None:
    path.unlink()
    path.mkdir()


STALE = "gpuledger: usage status is out of date (controller not reporting); GPU jobs are not checked.\n"
UNSAFE = "gpuledger: the usage status file is not root-owned and protected; ignored. Please tell an admin.\n"
CORRUPT = "gpuledger: the usage status file is unreadable; ignored. Please tell an admin.\n"
MISSING = "gpuledger: no usage status for you on this node yet; GPU jobs are not checked.\n"


@pytest.mark.parametrize(("spoil", "notice"), [
    (_user_writable, UNSAFE), (_group_writable, UNSAFE), (_owned_by_user, UNSAFE), (_symlink, UNSAFE),
    (_directory, UNSAFE),
], ids=lambda value: getattr(value, "__name__", "")[1:] or None)
def test_unsafe_status_file_fails_open_with_one_line(node: HookNode, alice: pwd.struct_passwd,
                                                     terminal: Callable[..., Terminal],
                                                     spoil: Callable[[Path, pwd.struct_passwd], None],
                                                     notice: str) -> None:
    # The file says blocked: were it believed, python3 would be refused.
    path = node.status.write(alice.pw_uid, status_fields(alice, tier="blocked", gpu_blocked=1))
    spoil(path, alice)
    banner, shell = _login(terminal, alice)
    assert banner == notice
    assert shell.type("python3 -c 'print(6 * 7)'") == notice + "42\n"


@pytest.mark.parametrize(("fields", "notice"), [
    ({"updated_at": int(time.time()) - 301}, STALE),
    ({"updated_at": int(time.time()) + 3600}, STALE),  # a clock far ahead must not keep a verdict alive
    ({"version": 2}, CORRUPT),
    ({"tier": "gold"}, CORRUPT),
], ids=["old", "future", "version", "tier"])
def test_stale_or_corrupt_status_fails_open_with_one_line(node: HookNode, alice: pwd.struct_passwd,
                                                          terminal: Callable[..., Terminal],
                                                          fields: dict[str, object], notice: str) -> None:
    node.status.write(alice.pw_uid, status_fields(alice, **{"tier": "blocked", **fields}))
    banner, shell = _login(terminal, alice)
    assert banner == notice
    assert shell.type("python3 -c 'print(6 * 7)'") == notice + "42\n"


def test_garbage_status_file_fails_open(node: HookNode, alice: pwd.struct_passwd,
                                        terminal: Callable[..., Terminal]) -> None:
    node.status.write(alice.pw_uid, raw="\x00\xff\x1b[2J tier=blocked\n" * 50)
    banner, _ = _login(terminal, alice)
    assert banner == CORRUPT


def test_missing_status_file_fails_open(alice: pwd.struct_passwd, terminal: Callable[..., Terminal]) -> None:
    banner, shell = _login(terminal, alice)
    assert banner == MISSING
    assert shell.type("python3 -c 'print(6 * 7)'") == MISSING + "42\n"


@pytest.mark.parametrize("mode", [0o775, 0o757])
def test_writable_status_directory_is_refused(node: HookNode, alice: pwd.struct_passwd,
                                              terminal: Callable[..., Terminal], mode: int) -> None:
    node.status.write(alice.pw_uid, status_fields(alice, tier="blocked"))
    os.chmod(node.status_dir, mode)
    try:
        banner, _ = _login(terminal, alice)
    finally:
        os.chmod(node.status_dir, 0o755)
    assert banner == UNSAFE


def test_status_directory_reached_through_a_symlink_is_refused(alice: pwd.struct_passwd,
                                                                terminal: Callable[..., Terminal]) -> None:
    other = HookNode()
    try:
        real = other.status_dir.with_name("real-status")
        other.status_dir.rename(real)
        other.status_dir.symlink_to(real)
        other.status.write(alice.pw_uid, status_fields(alice, tier="blocked"))
        assert terminal(alice, on=other).login() == UNSAFE
    finally:
        other.remove()


def test_exempt_tier_is_untouched(node: HookNode, alice: pwd.struct_passwd,
                                  terminal: Callable[..., Terminal]) -> None:
    node.status.write(alice.pw_uid, status_fields(alice, tier="exempt"))
    banner, shell = _login(terminal, alice)
    assert banner == ""
    assert shell.type("type -t python3; declare -F | grep -c gpuledger") == "file\n0\n"


def test_configured_exempt_user_is_untouched_even_without_status(exempt: pwd.struct_passwd,
                                                                  terminal: Callable[..., Terminal]) -> None:
    banner, shell = _login(terminal, exempt)
    assert banner == ""
    assert shell.type("type -t python3; declare -F | grep -c gpuledger") == "file\n0\n"


def test_root_is_untouched(node: HookNode, tmp_path: Path, terminal: Callable[..., Terminal]) -> None:
    # root's own rc files are the machine's; a fresh HOME holds only the prompt.
    (tmp_path / ".bash_profile").write_text(f"PS1='{PROMPT}'\n")
    path = node.status.write(0, {"version": 1, "uid": 0, "tier": "blocked"})
    try:
        shell = terminal(argv=["env", "-i", f"HOME={tmp_path}", "TERM=dumb", f"PATH={ENV['PATH']}", "bash", "-l"])
        assert shell.login() == ""
        assert shell.type("type -t python3; declare -F | grep -c gpuledger; echo ${_gpuledger_loaded-unset}") == (
            "file\n0\nunset\n")
    finally:
        path.unlink()
