"""The GPU-command wrappers in interactive shells: allow, warn, refuse, and never disturb the user's shell."""

from __future__ import annotations

import pwd
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.hooks.node import HookNode, status_fields, write_rc
from tests.hooks.terminal import PROMPT, Terminal

SKEL = Path("/etc/skel/.bashrc").read_text()
WARNING = ("gpuledger: low balance, 8.42 CNY left (about 7.0 hours at the current rate). "
           "Ask your PI or write to gpu-admin@lab.example to recharge.\n")


def _shell(node: HookNode, user: pwd.struct_passwd, terminal: Callable[..., Terminal], tier: str) -> Terminal:
    node.status.write(user.pw_uid, status_fields(user, tier=tier, balance="8.420000", time_to_empty_hours="7.0"))
    shell = terminal(user)
    shell.login()
    return shell


def test_normal_tier_runs_the_command_unchanged(node: HookNode, alice: pwd.struct_passwd,
                                                terminal: Callable[..., Terminal]) -> None:
    shell = _shell(node, alice, terminal, "normal")
    assert shell.type("type -t python3") == "function\n"
    assert shell.type("""python3 -c 'import sys; print(sys.argv[1:])' 'a b' '$HOME' '*' ''""") == (
        "['a b', '$HOME', '*', '']\n")
    assert shell.type("python3 -c 'raise SystemExit(7)'; echo status=$?") == "status=7\n"
    assert shell.type("printf 'x\\ny\\n' | python3 -c 'import sys; print(sys.stdin.read().split())'") == (
        "['x', 'y']\n")


def test_warning_tier_prints_one_line_then_runs(node: HookNode, alice: pwd.struct_passwd,
                                                terminal: Callable[..., Terminal]) -> None:
    shell = _shell(node, alice, terminal, "warning")
    assert shell.type("python3 -c 'print(6 * 7)'; echo status=$?") == WARNING + "42\nstatus=0\n"
    # The warning goes to stderr: a pipeline's data is untouched and every status is the command's own.
    assert shell.type("python3 -c 'print(20)' 2>/dev/null | python3 -c 'import sys; print(int(input()) + 1)' "
                      "2>/dev/null; echo ${PIPESTATUS[*]}") == "21\n0 0\n"
    assert shell.type("python3 -c 'print(1)' 2>&1 >/dev/null | wc -l") == "1\n"


@pytest.mark.parametrize("tier", ["limited", "blocked"])
def test_limited_and_blocked_refuse_with_how_to_recharge(node: HookNode, alice: pwd.struct_passwd,
                                                         terminal: Callable[..., Terminal], tier: str) -> None:
    shell = _shell(node, alice, terminal, tier)
    assert shell.type("python3 -c 'print(\"ran\")'; echo status=$?") == (
        f"gpuledger: python3 not started: balance 8.42 CNY, tier {tier}; new GPU jobs are refused until you "
        "recharge.\n"
        "gpuledger: Ask your PI or write to gpu-admin@lab.example to recharge. Details: gpuledger-balance\n"
        "status=126\n")
    assert "not started" in shell.type("torchrun --help")
    # Bypassing the friendly layer is possible; the node's GPU device block is the hard layer.
    assert shell.type("command python3 -c 'print(\"ran\")'") == "ran\n"


def test_each_run_reads_the_current_status(node: HookNode, alice: pwd.struct_passwd,
                                           terminal: Callable[..., Terminal]) -> None:
    shell = _shell(node, alice, terminal, "normal")
    assert shell.type("python3 -c 'print(1)'") == "1\n"
    node.status.write(alice.pw_uid, status_fields(alice, tier="limited"))
    assert shell.type("python3 -c 'print(1)' 2>/dev/null; echo status=$?") == "status=126\n"
    node.status.write(alice.pw_uid, status_fields(alice, tier="normal"))
    assert shell.type("python3 -c 'print(1)'") == "1\n"


def test_missing_command_fails_as_without_the_hook(node: HookNode, alice: pwd.struct_passwd,
                                                   terminal: Callable[..., Terminal]) -> None:
    node.status.write(alice.pw_uid, status_fields(alice))
    outputs = []
    for hooked in (True, False):
        shell = terminal(alice, hooked=hooked)
        shell.login()
        outputs.append(shell.type("deepspeed --version; echo status=$?"))
    assert outputs[0] == outputs[1]
    assert outputs[0].endswith("status=127\n")


@pytest.mark.parametrize("rc_line", ["set -u", "set -u -o pipefail"])
def test_user_shell_with_set_u(node: HookNode, alice: pwd.struct_passwd, terminal: Callable[..., Terminal],
                               rc_line: str) -> None:
    write_rc(alice, SKEL + f"PS1='{PROMPT}'\n{rc_line}\n")
    for tier in ("normal", "warning", "limited"):
        node.status.write(alice.pw_uid, status_fields(alice, tier=tier))
        assert shell_ok(terminal(alice), "python3 -c 'print(1)' 2>/dev/null; echo status=$?") in (
            "1\nstatus=0\n", "status=126\n")
    node.status.clear()
    assert shell_ok(terminal(alice), "python3 -c 'print(1)' 2>/dev/null") == "1\n"


def shell_ok(shell: Terminal, line: str) -> str:
    """Logs in, types ``line``, checks the shell is still alive with its options; returns ``line``'s output."""
    shell.login()
    output = shell.type(line)
    assert shell.type("echo alive") == "alive\n"
    return output


def test_user_rc_with_set_e_keeps_its_session(node: HookNode, alice: pwd.struct_passwd,
                                              terminal: Callable[..., Terminal]) -> None:
    # The hook we replace put `set -euo pipefail` into users' shells and ended their sessions; here the
    # user chose `set -e`, and the hook itself never makes a command fail.
    write_rc(alice, SKEL + f"PS1='{PROMPT}'\nset -e\n")
    for tier in ("normal", "warning"):
        node.status.write(alice.pw_uid, status_fields(alice, tier=tier))
        assert shell_ok(terminal(alice), "python3 -c 'print(1)' 2>/dev/null") == "1\n"
    node.status.clear()
    assert shell_ok(terminal(alice), "python3 -c 'print(1)' 2>/dev/null") == "1\n"
    # A refusal under the user's own set -e says so and returns 0: a status of 126 would end the session.
    node.status.write(alice.pw_uid, status_fields(alice, tier="limited"))
    assert shell_ok(terminal(alice), "python3 -c 'print(\"ran\")'; echo status=$? errexit=${-//[^e]/}") == (
        "gpuledger: python3 not started: balance 123.45 CNY, tier limited; new GPU jobs are refused until you "
        "recharge.\n"
        "gpuledger: Ask your PI or write to gpu-admin@lab.example to recharge. Details: gpuledger-balance\n"
        "status=0 errexit=e\n")
    # The command's own failure still ends the shell under set -e, exactly as without the wrapper.
    node.status.write(alice.pw_uid, status_fields(alice, tier="normal"))
    shell = terminal(alice)
    shell.login()
    status, _ = shell.exit("python3 -c 'raise SystemExit(3)'")
    assert status == 3


def test_users_readonly_variables_do_not_break_the_hook(node: HookNode, alice: pwd.struct_passwd,
                                                        terminal: Callable[..., Terminal]) -> None:
    # The names an unprefixed hook used for its locals and status fields; bash refuses `local` of a
    # readonly name, which aborted the whole command line.
    names = ("mode path file name line key value now field want i me shown rate left when whole fraction "
             "problem version user uid tier balance currency notice status_dir wrapped_commands exempt_users")
    write_rc(alice, SKEL + f"PS1='{PROMPT}'\n" + "".join(f"readonly {n}=mine\n" for n in names.split()))
    node.status.write(alice.pw_uid, status_fields(alice, tier="warning", balance="8.420000",
                                                  time_to_empty_hours="7.0"))
    shell = terminal(alice)
    assert shell.login().startswith("gpuledger: balance 8.42 CNY, tier warning")
    assert shell.type("python3 -c 'print(6 * 7)'; echo status=$?") == WARNING + "42\nstatus=0\n"
    node.status.write(alice.pw_uid, status_fields(alice, tier="limited"))
    assert shell.type("python3 -c 'print(1)' 2>/dev/null; echo status=$?") == "status=126\n"
    assert shell.type("echo $mode $tier $exempt_users") == "mine mine mine\n"


def test_strict_shell_loading_the_hook_keeps_options_and_traps(node: HookNode, alice: pwd.struct_passwd,
                                                                terminal: Callable[..., Terminal]) -> None:
    """The whole hook, sourced and used under `set -eEu -o pipefail` with an ERR trap, never trips them."""
    node.status.write(alice.pw_uid, status_fields(alice, tier="warning"))
    shell = terminal(alice)
    shell.login()
    # Escaped, so that the typed line does not itself contain the prompt the driver waits for.
    escaped = PROMPT.replace("$", "\\$").replace(" ", "\\ ")
    shell.type(f"export PS1={escaped}; exec bash --noprofile --norc -l -i")
    shell.type("set -eEu -o pipefail; trap 'echo ERR-TRAP' ERR")
    before = shell.type("echo $-; set +o; trap -p")
    outputs = [shell.type(". /etc/profile.d/gpuledger.sh")]
    assert "gpuledger: balance" in outputs[0]
    outputs.append(shell.type("python3 -c 'print(1)' 2>/dev/null"))
    node.status.write(alice.pw_uid, status_fields(alice, tier="blocked"))
    # Refused under errexit: status 0 (the reason went to stderr), and nothing ran.
    outputs.append(shell.type("python3 -c 'print(1)' 2>/dev/null; echo status=$?"))
    node.status.write(alice.pw_uid, status_fields(alice, version=9))
    outputs.append(shell.type("python3 -c 'print(1)' 2>/dev/null"))
    node.status.clear()
    outputs.append(shell.type("python3 -c 'print(1)' 2>/dev/null"))
    assert outputs[1:] == ["1\n", "status=0\n", "1\n", "1\n"]
    assert "ERR-TRAP" not in "".join(outputs)
    assert shell.type("echo $-; set +o; trap -p") == before
    # A command's own failure reaches the user's ERR trap exactly as often as without the wrapper.
    shell.type("set +e")
    node.status.write(alice.pw_uid, status_fields(alice))
    unwrapped = shell.type("command python3 -c 'raise SystemExit(3)'; echo status=$?")
    assert unwrapped == "ERR-TRAP\nstatus=3\n"
    assert shell.type("python3 -c 'raise SystemExit(3)'; echo status=$?") == unwrapped


def test_wrapped_commands_come_from_the_installed_configuration(alice: pwd.struct_passwd,
                                                               terminal: Callable[..., Terminal]) -> None:
    other = HookNode(wrapped_commands="mytool bad;name $(touch${IFS}/tmp/glh-owned) python3.11")
    try:
        other.status.write(alice.pw_uid, status_fields(alice, tier="limited"))
        shell = terminal(alice, on=other)
        assert shell.login().startswith("gpuledger: balance")
        assert shell.type("type -t mytool python3.11 python3; declare -F | grep -c 'bad\\|touch'") == (
            "function\nfunction\nfile\n0\n")
        assert shell.type("mytool 2>/dev/null; echo status=$?") == "status=126\n"
    finally:
        other.remove()
    assert not Path("/tmp/glh-owned").exists()
