"""gpuledger-balance: the same detail as the login banner, on demand, with exact amounts."""

from __future__ import annotations

import os
import pwd
import subprocess
import time
from pathlib import Path

import pytest

from probe import queuestatus, status
from tests.hooks.node import HookNode, status_fields


def _balance(node: HookNode, user: pwd.struct_passwd | None, *args: str) -> subprocess.CompletedProcess[bytes]:
    as_user = ["runuser", "-u", user.pw_name, "--"] if user else []
    return node.run([*as_user, str(node.balance), *args])


def test_prints_the_banner_detail_on_stdout(node: HookNode, alice: pwd.struct_passwd) -> None:
    node.status.write(alice.pw_uid, status_fields(alice, tier="warning", notice="Below 10 CNY."))
    result = _balance(node, alice)
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout.decode() == (
        "gpuledger: balance 123.45 CNY, tier warning\n"
        "  spending 2.50 CNY/hour over the last hour; about 49.4 hours until GPU access is blocked\n"
        "  Your balance is running low.\n"
        "  Notice: Below 10 CNY.\n"
        "  To recharge: Ask your PI or write to gpu-admin@lab.example to recharge.\n"
    )


@pytest.mark.parametrize(("balance", "shown"), [
    ("123.450000", "123.45"), ("5", "5.00"), ("0.123456", "0.123456"), ("-0.500000", "-0.50"),
    ("100.000001", "100.000001"), ("99999999999999999999.990000", "99999999999999999999.99"),
])
def test_amounts_are_shown_exactly_never_rounded(node: HookNode, alice: pwd.struct_passwd, balance: str,
                                                  shown: str) -> None:
    node.status.write(alice.pw_uid, status_fields(alice, balance=balance))
    assert _balance(node, alice).stdout.decode().splitlines()[0] == f"gpuledger: balance {shown} CNY, tier normal"


@pytest.mark.parametrize("fields", [
    {"balance": "1e5"}, {"balance": "12,5"}, {"balance": ""}, {"currency": "cny"}, {"uid": 0},
    {"updated_at": "soon"}, {"updated_at": "1" * 16}, {"kill_at": "-5"}, {"gpu_blocked": "yes"},
    {"burn_rate_per_hour": "fast"}, {"version": ""},
], ids=lambda fields: "-".join(f"{key}={value}" for key, value in fields.items()))
def test_malformed_fields_are_corrupt(node: HookNode, alice: pwd.struct_passwd, fields: dict[str, object]) -> None:
    node.status.write(alice.pw_uid, status_fields(alice, **fields))
    result = _balance(node, alice)
    assert (result.returncode, result.stdout) == (1, b"")
    assert result.stderr == b"gpuledger: the usage status file is unreadable; ignored. Please tell an admin.\n"


def test_unknown_keys_and_any_order_are_accepted(node: HookNode, alice: pwd.struct_passwd) -> None:
    fields = status_fields(alice, future_key="x=y", notice="a=b=c")
    node.status.write(alice.pw_uid, dict(reversed(list(fields.items()))))
    result = _balance(node, alice)
    assert result.returncode == 0
    assert "  Notice: a=b=c\n" in result.stdout.decode()


def test_control_characters_never_reach_the_terminal(node: HookNode, alice: pwd.struct_passwd) -> None:
    node.status.write(alice.pw_uid, status_fields(alice, notice="\x1b]0;owned\x07Recharge \x1b[31msoon"))
    assert "  Notice: ]0;ownedRecharge [31msoon\n" in _balance(node, alice).stdout.decode()


def test_missing_status_exits_1_with_the_notice(node: HookNode, alice: pwd.struct_passwd) -> None:
    result = _balance(node, alice)
    assert (result.returncode, result.stdout) == (1, b"")
    assert result.stderr == b"gpuledger: no usage status for you on this node yet; GPU jobs are not checked.\n"


def test_exempt_user_and_root(node: HookNode, exempt: pwd.struct_passwd) -> None:
    assert _balance(node, exempt).stdout == b"gpuledger: you are exempt from metering on this node.\n"
    assert _balance(node, None).stdout == b"gpuledger: root is not metered.\n"


def test_arguments_are_a_usage_error(node: HookNode, alice: pwd.struct_passwd) -> None:
    result = _balance(node, alice, "bob")
    assert (result.returncode, result.stdout) == (2, b"")
    assert _balance(node, alice, "--help").returncode == 0


def test_without_the_hook_installed_it_says_so(node: HookNode, alice: pwd.struct_passwd) -> None:
    result = node.run(["runuser", "-u", alice.pw_name, "--", str(node.balance)], hooked=False)
    assert result.returncode == 1
    assert b"cannot load /etc/profile.d/gpuledger.sh" in result.stderr


def test_reads_what_the_node_command_writes(node: HookNode, alice: pwd.struct_passwd) -> None:
    """The writer (probe/status.py) and this reader agree on docs/status-file.md."""
    document = status_fields(alice, tier="blocked", gpu_blocked=True, time_to_empty_hours=None, kill_at=None,
                             cpu_quota_percent="12.5")
    assert status.problems(document, alice.pw_uid, alice.pw_name) == []
    status.write(str(node.status_dir), alice.pw_uid, status.render(document))
    result = _balance(node, alice)
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout.decode() == (
        "gpuledger: balance 123.45 CNY, tier blocked\n"
        "  spending 2.50 CNY/hour over the last hour\n"
        "  Your balance is used up.\n"
        "  GPU access is blocked on this node: new processes cannot open a GPU.\n"
        "  Your CPU use is limited to 12.5% of this node's CPUs.\n"
        "  To recharge: Ask your PI or write to gpu-admin@lab.example to recharge.\n"
    )


def _queue(node: HookNode, user: pwd.struct_passwd, state: str, *, age_s: int = 0) -> Path:
    """The user's <uid>.queue as queue-status renders it: one request 12 in ``state``."""
    document = {"version": 1, "uid": user.pw_uid, "user": user.pw_name, "updated_at": int(time.time()) - age_s,
                "requests": [{"id": 12, "nonce": "n" * 16, "state": state, "position": 3, "eta": None,
                              "eta_basis": "", "gpus": [], "offer_expires": None, "ends": None, "reason": ""}]}
    assert queuestatus.problems(document, user.pw_uid, user.pw_name) == []
    path = node.status_dir / queuestatus.file_name(user.pw_uid)
    path.write_bytes(queuestatus.render(document))
    os.chmod(path, 0o644)
    return path


def test_an_active_queue_request_adds_one_line(node: HookNode, alice: pwd.struct_passwd) -> None:
    node.status.write(alice.pw_uid, status_fields(alice))
    _queue(node, alice, "queued")
    lines = _balance(node, alice).stdout.decode().splitlines()
    assert lines[-1] == "  GPU queue: request 12 queued at position 3 (gpu-request --status)"


@pytest.mark.parametrize("case", ["ended", "stale", "not-root", "group-writable", "no-status"])
def test_no_queue_line_without_a_fresh_active_root_answer(node: HookNode, alice: pwd.struct_passwd,
                                                          case: str) -> None:
    if case != "no-status":
        node.status.write(alice.pw_uid, status_fields(alice))
    path = _queue(node, alice, "ended" if case == "ended" else "queued", age_s=700 if case == "stale" else 0)
    if case == "not-root":
        os.chown(path, alice.pw_uid, -1)
    if case == "group-writable":
        os.chmod(path, 0o664)
    assert b"GPU queue" not in _balance(node, alice).stdout + _balance(node, alice).stderr
