"""The allow-list: valid requests parse to typed commands; everything else is refused, with no shell."""

import io
import json
import random
import subprocess
import sys

import pytest

from probe import command
from probe.constants import EXIT_REFUSED
from probe.errors import Refused
from probe.node import main

BOOT = "0f3c9a52-7d1e-4b8a-9c6f-2e5d4a3b1c0e"
VALID = [
    "version",
    "sample",
    "quota-get 1001",
    "quota-set 1001 100000",
    "quota-clear 1001",
    "gpu-state 1001",
    "gpu-block 1001",
    "gpu-unblock 1001",
    f"kill {BOOT} 4242 123456 1001",
    "status-write 1001",
    "notify 1001",
    "gpu-requests",
    "gpu-requests-done",
    "queue-status 1001",
    "queue-status --uid 1001",
    "gpu-block --uid 1001 --minors 0,3",
    "gpu-block 1001 --minors 7",
]
SPAWN_EVENTS = ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "pty.spawn")
_events: list[str] = []
_recording = [False]


def _audit(event, args):
    if _recording[0] and event.startswith(SPAWN_EVENTS):
        _events.append(event)


# Audit hooks cannot be removed; this one records only while the fuzz test runs.
sys.addaudithook(_audit)


@pytest.mark.parametrize("line", VALID)
def test_every_verb_parses_from_the_ssh_form(line):
    parsed = command.parse(command.split_ssh_command(line))
    assert parsed.verb == line.split(" ")[0]


def test_arguments_are_typed():
    parsed = command.parse(command.split_ssh_command(f"kill {BOOT} 4242 18446744073709551615 1001"))
    assert parsed == command.Command("kill", uid=1001, pid=4242, start_ticks=2**64 - 1, boot_id=BOOT)
    assert command.parse(["quota-set", "0", "1000000"]).ppm == 1000000


def test_options_name_arguments_and_minors_are_a_sorted_set():
    assert command.parse(["gpu-block", "--uid", "1001", "--minors", "3,0"]) == command.Command(
        "gpu-block", uid=1001, minors=(0, 3))
    assert command.parse(["gpu-block", "1001"]).minors is None
    assert command.parse(["kill", "--uid", "5", "--pid", "9", "--start-ticks", "1", "--boot-id", BOOT]).pid == 9
    for words, reason in [
        (["gpu-block", "1001", "--minors", "0,0"], "bad_argument"),
        (["gpu-block", "1001", "--minors", "254"], "bad_argument"),
        (["gpu-block", "1001", "--minors", "0,,1"], "bad_argument"),
        (["gpu-block", "1001", "--minors", "01"], "bad_argument"),
        (["gpu-block", "1001", "--minors"], "bad_arity"),
        (["gpu-unblock", "1001", "--minors", "0"], "bad_option"),
        (["gpu-block", "1001", "--uid", "1001"], "bad_option"),
        (["gpu-block", "--minors", "0"], "bad_arity"),
        (["queue-status", "1001", "1002"], "bad_arity"),
        (["queue-status", "--uid", "1001", "junk", "x"], "bad_option"),
        (["gpu-requests", "1001"], "bad_arity"),
        (["gpu-requests-done", "0000000001-00aa"], "bad_arity"),
        (["gpu-requests-done", "--handle", "0000000001-00aa"], "bad_option"),
        (["gpu-requests", "--ack", "1"], "bad_option"),
        (["quota-get", "1,2"], "bad_argument"),
    ]:
        with pytest.raises(Refused) as raised:
            command.parse(words)
        assert raised.value.reason == reason, words


def _mutations(rng):
    """Invalid variants of every valid request: metacharacters, substitutions, whitespace, bad numbers."""
    injections = [
        ";", "&&", "|", "`id`", "$(id)", "${IFS}", "\n", "\r", "\t", "\0", "'", '"', "\\", ">", "<", "*", "?",
        "~", "#", "!", "/", ".", "..", "%", "=", "+", ",", "{", "}", "[", "]", "(", ")", "^", "é", "\u202e", " ",
    ]
    bad_numbers = [
        "-1", "+1", "01", "1.0", "1e3", "0x10", "١", "4294967295", "99999999999999999999999", "", "abc",
        "1001 ", " 1001", "1" * 300, "NaN", "∞", "1_000",
    ]
    for line in VALID:
        words = line.split(" ")
        for token in injections:
            for position in range(len(line) + 1):
                if rng.random() < 0.15 or position in (0, len(line)):
                    yield line[:position] + token + line[position:]
        for index in range(1, len(words)):
            for number in bad_numbers:
                if number == "4294967295" and words[0] == "kill" and index == 3:
                    continue  # a valid START_TICKS
                yield " ".join(words[:index] + [number] + words[index + 1 :])
        yield line + " extra"
        yield line + " 1"
        if len(words) > 1:
            yield " ".join(words[:-1])
        yield line.upper()
        yield line.replace(" ", "  ")
        yield "sudo " + line
        yield "/bin/sh -c '" + line + "'"
    for _ in range(200):
        yield "".join(chr(rng.randrange(1, 0x3000)) for _ in range(rng.randrange(1, 40)))
    yield "quota-set 1001 0"
    yield "quota-set 1001 1000001"
    yield "kill 0F3C9A52-7D1E-4B8A-9C6F-2E5D4A3B1C0E 1 1 1001"
    yield f"kill {BOOT} 0 1 1001"
    yield f"kill {BOOT} 4194305 1 1001"
    yield f"kill {BOOT} 1 18446744073709551616 1001"
    yield "x" * 10000


def test_a_thousand_generated_commands_are_all_refused_and_no_process_is_started(capsys):
    cases = sorted(set(_mutations(random.Random(3))) - set(VALID))
    assert len(cases) >= 1000
    _events.clear()
    _recording[0] = True
    try:
        for line in cases:
            out = io.StringIO()
            status = main([], {"SSH_ORIGINAL_COMMAND": line}, io.BytesIO(), out)
            result = json.loads(out.getvalue())
            assert (status, result["ok"], result["error"]["kind"]) == (EXIT_REFUSED, False, "refused"), ascii(line)
        subprocess.run(["true"], check=True)  # proves the hook sees process starts
    finally:
        _recording[0] = False
    assert _events == ["subprocess.Popen"]
    logged = capsys.readouterr().err.splitlines()
    assert len(logged) == len(cases)
    assert all(line.startswith("gpuledger-node: refused ") and line.isprintable() for line in logged)


def test_ssh_mode_refuses_arguments_and_a_missing_command():
    for argv, environ in (
        (["sample"], {"SSH_ORIGINAL_COMMAND": "sample"}),
        ([], {"SUDO_USER": "gpuledger"}),
        (["--config", "/tmp/x", "sample"], {"SSH_CONNECTION": "1 2 3 4"}),
    ):
        out = io.StringIO()
        assert main(argv, environ, io.BytesIO(), out) == EXIT_REFUSED
        assert json.loads(out.getvalue())["ok"] is False


def test_split_refuses_whitespace_tricks():
    for line in ("sample ", " sample", "quota-get  1001", "quota-get\t1001", "", "sample\n"):
        with pytest.raises(Refused):
            command.parse(command.split_ssh_command(line))


def test_session_open_is_refused_over_ssh_even_with_pam_variables():
    # Only pam_exec runs the PAM hook; over SSH (or with a PAM_TYPE smuggled in) it is refused before any handler.
    for environ in ({"SSH_ORIGINAL_COMMAND": "session-open"},
                    {"SSH_ORIGINAL_COMMAND": "session-open", "PAM_TYPE": "open_session"}):
        out = io.StringIO()
        assert main([], environ, io.BytesIO(), out) == EXIT_REFUSED
        assert json.loads(out.getvalue())["error"]["reason"] == "pam_only_verb"


def test_pam_items_take_the_modules_value_after_a_users_copy():
    from probe.session import pam_items

    # pam_exec: the PAM environment first (pam_env may put a user's PAM_USER there), then its own items.
    raw = b"PAM_USER=victim\0PAM_TYPE=close_session\0HOME=/x\0PAM_USER=alice\0PAM_TYPE=open_session\0"
    assert pam_items(raw) == {"PAM_USER": "alice", "PAM_TYPE": "open_session"}
    assert pam_items(b"") == {}
