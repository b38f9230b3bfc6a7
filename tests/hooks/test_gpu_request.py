"""``gpu-request``: the user's side of the GPU queue, run as a real user with the system python3
(docs/gpu-request.md). What it drops is read back by the probe's own drop-box code; its answers are files
rendered by the probe's ``queue-status`` code, so both ends of the contract are the real ones."""

from __future__ import annotations

import os
import pwd
import re
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from probe import atomicfile, dropbox, gpurequests, queuestatus
from tests.hooks.node import ENV, REPO

TOOL = REPO / "hooks" / "gpu-request"
PYTHON = "/usr/bin/python3"  # the node's own interpreter, not the suite's venv
NODE_NAME = os.uname().nodename.split(".")[0]


@dataclass(frozen=True)
class Installed:
    """gpu-request installed under a root-owned directory in /run, with its own drop box and status dir."""

    tool: Path
    box: Path
    status: Path

    def run(self, user: pwd.struct_passwd, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(user, *args), capture_output=True, text=True, env=ENV, timeout=60)

    def argv(self, user: pwd.struct_passwd, *args: str) -> list[str]:
        # setpriv execs the tool itself (runuser would stay its parent and keep Ctrl-C's SIGINT from it).
        return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups", "--", PYTHON,
                str(self.tool), *args]

    def collect(self) -> list[dropbox.Accepted | dropbox.Rejected]:
        entries, more = dropbox.collect(gpurequests.BOX, str(self.box), uid_min=1)
        assert entries is not None and not more
        return list(entries)

    def answer(self, user: pwd.struct_passwd, requests: list[dict[str, object]], *, age_s: int = 0) -> None:
        document = {"version": 1, "uid": user.pw_uid, "user": user.pw_name,
                    "updated_at": int(time.time()) - age_s, "requests": requests}
        assert queuestatus.problems(document, user.pw_uid, user.pw_name) == []
        atomicfile.replace(str(self.status), queuestatus.file_name(user.pw_uid), queuestatus.render(document))


def configured(text: str, **settings: str) -> str:
    """The tool's text with its ``NAME = "..."`` configuration lines set, as the role's regex_replace does."""
    for key, value in settings.items():
        text, found = re.subn(rf'(?m)^{key} = ".*"$', f'{key} = "{value}"', text)
        assert found == 1, key
    return text


@pytest.fixture
def installed() -> Iterator[Installed]:
    root = Path(tempfile.mkdtemp(prefix="gpuledger-gpureq-", dir="/run"))
    os.chmod(root, 0o755)
    box, status = root / "gpu-requests", root / "status"
    box.mkdir()
    os.chmod(box, 0o1733)
    status.mkdir(mode=0o755)
    tool = root / "gpu-request"
    tool.write_text(configured(TOOL.read_text(), REQUEST_DIR=str(box), STATUS_DIR=str(status), POLL_S="0.1"))
    os.chmod(tool, 0o755)
    yield Installed(tool, box, status)
    subprocess.run(["rm", "-rf", str(root)], check=True)


def request(rid: int, nonce: str, state: str, **fields: object) -> dict[str, object]:
    base: dict[str, object] = {"id": rid, "nonce": nonce, "state": state, "position": None, "eta": None,
                               "eta_basis": "", "gpus": [], "offer_expires": None, "ends": None, "reason": ""}
    base.update(fields)
    return base


def test_a_request_is_the_users_own_file_the_probe_accepts(installed: Installed, alice: pwd.struct_passwd) -> None:
    result = installed.run(alice, "--model", "rtx3090,a100", "--count", "2", "--hours", "0.5", "--node", "n1")
    assert result.returncode == 0, result.stderr
    [path] = installed.box.iterdir()
    info = path.lstat()
    assert re.fullmatch(r"[0-9a-f]{32}", path.name)
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (alice.pw_uid, 0o644)
    assert f"request dropped as {path}" in result.stdout and "gpu-request --status" in result.stdout
    [entry] = installed.collect()
    assert isinstance(entry, dropbox.Accepted), entry
    assert (entry.uid, entry.user) == (alice.pw_uid, alice.pw_name)
    nonce = entry.value.pop("nonce")
    assert nonce in result.stdout and gpurequests.NONCE.match(nonce)
    assert entry.value == {"op": "request", "models": ["rtx3090", "a100"], "count": 2, "hours": "0.5",
                           "node": "n1", "run": False}
    assert list(installed.box.iterdir()) == []  # read and removed


@pytest.mark.parametrize(("args", "body"), [
    ((), {"op": "request", "models": [], "count": 1, "hours": None, "node": None, "run": False}),
    (("--cancel", "12"), {"op": "cancel", "id": 12}),
    (("--claim", "7"), {"op": "claim", "id": 7}),
    (("--release", "7"), {"op": "release", "id": 7}),
    (("--release",), {"op": "release", "id": None}),
])
def test_every_action_drops_a_body_the_probe_accepts(installed: Installed, alice: pwd.struct_passwd,
                                                      args: tuple[str, ...], body: dict[str, object]) -> None:
    assert installed.run(alice, *args).returncode == 0
    [entry] = installed.collect()
    assert isinstance(entry, dropbox.Accepted), entry
    entry.value.pop("nonce")
    assert entry.value == body


@pytest.mark.parametrize("args", [("--count", "0"), ("--count", "65"), ("--hours", "169"), ("--hours", "0"),
                                  ("--hours", "1e3"), ("--model", "rtx 3090"), ("--cancel", "x"),
                                  ("--cancel", "1", "--claim", "2"), ("true",)])
def test_bad_arguments_are_usage_errors_and_drop_nothing(installed: Installed, alice: pwd.struct_passwd,
                                                         args: tuple[str, ...]) -> None:
    result = installed.run(alice, *args)
    assert result.returncode == 2 and result.stderr
    assert list(installed.box.iterdir()) == []


def test_status_without_an_answer_says_the_controller_has_not_answered(installed: Installed,
                                                                       alice: pwd.struct_passwd) -> None:
    result = installed.run(alice, "--status")
    assert result.returncode == 1 and result.stdout == ""
    assert "the controller has not answered yet" in result.stderr
    assert str(installed.status / f"{alice.pw_uid}.queue") in result.stderr


def test_a_stale_answer_is_not_shown_as_current(installed: Installed, alice: pwd.struct_passwd) -> None:
    installed.answer(alice, [request(3, "n" * 16, "queued", position=1)], age_s=660)
    result = installed.run(alice, "--status")
    assert result.returncode == 1 and result.stdout == ""
    assert "last answer is stale" in result.stderr


def test_status_shows_position_eta_offer_and_grant(installed: Installed, alice: pwd.struct_passwd) -> None:
    now = int(time.time())
    installed.answer(alice, [
        request(12, "a" * 16, "queued", position=3, eta=now + 3600, eta_basis="declared ends of 2 grants"),
        request(13, "b" * 16, "offered", gpus=[{"node": "n1", "index": 0, "model": "rtx3090"}],
                offer_expires=now + 300),
        request(14, "c" * 16, "granted", gpus=[{"node": "n2", "index": 3, "model": "a100"}], ends=now + 7200),
        request(15, "d" * 16, "refused", reason="no such model"),
    ])
    result = installed.run(alice, "--status")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("gpuledger: your GPU requests, as the controller saw them at ")
    clock = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(now + 3600))
    assert lines[1:] == [
        f"  request 12: queued at position 3, about {clock} (declared ends of 2 grants)",
        "  request 13: offered n1 GPU 0 (rtx3090); claim it by "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(now + 300))} with gpu-request --claim 13",
        f"  request 14: granted n2 GPU 3 (a100) until {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(now + 7200))}",
        "  request 15: refused: no such model",
    ]


def test_an_answer_not_written_by_root_is_refused(installed: Installed, alice: pwd.struct_passwd) -> None:
    installed.answer(alice, [])
    os.chown(installed.status / f"{alice.pw_uid}.queue", alice.pw_uid, -1)
    result = installed.run(alice, "--status")
    assert result.returncode == 1 and "is not root's private answer" in result.stderr


def wait_for_entry(installed: Installed, process: subprocess.Popen[str]) -> dropbox.Accepted:
    for _ in range(600):
        if any(installed.box.iterdir()):
            [entry] = installed.collect()
            assert isinstance(entry, dropbox.Accepted), entry
            return entry
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    raise AssertionError("gpu-request --run dropped no request")


def test_run_waits_for_the_grant_runs_on_the_granted_gpus_then_releases(installed: Installed,
                                                                         alice: pwd.struct_passwd) -> None:
    process = subprocess.Popen(
        installed.argv(alice, "--run", "--count", "2", "--", "sh", "-c", 'echo "gpus=$CUDA_VISIBLE_DEVICES"'),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    entry = wait_for_entry(installed, process)
    assert (entry.uid, entry.value["op"], entry.value["run"], entry.value["count"]) == (alice.pw_uid, "request",
                                                                                        True, 2)
    installed.answer(alice, [request(21, entry.value["nonce"], "granted", gpus=[
        {"node": NODE_NAME, "index": 3, "model": "rtx3090"}, {"node": "elsewhere", "index": 1, "model": "rtx3090"},
        {"node": NODE_NAME, "index": 0, "model": "rtx3090"}])])
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "gpus=3,0\n" in out
    [release] = installed.collect()
    assert isinstance(release, dropbox.Accepted) and release.uid == alice.pw_uid
    assert (release.value["op"], release.value["id"]) == ("release", 21)


def run_until_queued(installed: Installed, alice: pwd.struct_passwd) -> subprocess.Popen[str]:
    """``gpu-request --run`` waiting, its request numbered 9 and queued."""
    process = subprocess.Popen(installed.argv(alice, "--run", "--", "true"), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=ENV)
    entry = wait_for_entry(installed, process)
    installed.answer(alice, [request(9, entry.value["nonce"], "queued", position=1)])
    return process


def test_interrupting_run_while_queued_cancels_its_request(installed: Installed, alice: pwd.struct_passwd) -> None:
    process = run_until_queued(installed, alice)
    time.sleep(1)  # several polls: it has seen its id
    # As a terminal's Ctrl-C reaches the foreground job.
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, (out, err)
    [cancel] = installed.collect()
    assert isinstance(cancel, dropbox.Accepted)
    assert (cancel.value["op"], cancel.value["id"]) == ("cancel", 9)


def test_interrupting_run_before_the_controller_answers_names_nothing(installed: Installed,
                                                                      alice: pwd.struct_passwd) -> None:
    process = subprocess.Popen(installed.argv(alice, "--run", "--", "true"), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=ENV)
    wait_for_entry(installed, process)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "gpu-request --cancel ID" in err
    assert list(installed.box.iterdir()) == []  # no release of all: that would end the user's other grants


def test_run_stops_when_the_request_is_refused(installed: Installed, alice: pwd.struct_passwd) -> None:
    process = subprocess.Popen(installed.argv(alice, "--run", "--", "true"), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=ENV)
    entry = wait_for_entry(installed, process)
    installed.answer(alice, [request(5, entry.value["nonce"], "refused", reason="no such model")])
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1 and "request 5 refused: no such model" in err


def test_run_claims_an_offer_itself(installed: Installed, alice: pwd.struct_passwd) -> None:
    process = subprocess.Popen(installed.argv(alice, "--run", "--", "true"), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=ENV)
    entry = wait_for_entry(installed, process)
    gpu = {"node": NODE_NAME, "index": 1, "model": "rtx3090"}
    installed.answer(alice, [request(8, entry.value["nonce"], "offered", gpus=[gpu],
                                     offer_expires=int(time.time()) + 300)])
    claim = wait_for_entry(installed, process)
    assert (claim.uid, claim.value["op"], claim.value["id"]) == (alice.pw_uid, "claim", 8)
    installed.answer(alice, [request(8, entry.value["nonce"], "granted", gpus=[gpu])])
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "CUDA_VISIBLE_DEVICES=1" in out
    [release] = installed.collect()
    assert isinstance(release, dropbox.Accepted) and (release.value["op"], release.value["id"]) == ("release", 8)
