"""``gpuledger-balance --web CODE``: the user's half of the console's SSH-proven login (docs/web-login.md)."""

from __future__ import annotations

import os
import pwd
import re
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from probe import logincodes
from tests.hooks.node import HookNode

URL = "https://console.example/login"
# Under /run like the HookNode, and not below a directory others may write.
SPOOL = Path("/run") / f"gpuledger-hooktest-spool-{os.getpid()}" / "web-login"


@pytest.fixture(scope="module")
def web_node() -> Iterator[HookNode]:
    installed = HookNode(__gl_web_login_dir=str(SPOOL), __gl_console_url=URL)
    yield installed
    installed.remove()


@pytest.fixture
def spool(web_node: HookNode) -> Iterator[Path]:
    path = SPOOL
    path.mkdir(parents=True)
    os.chmod(path, 0o1733)
    yield path
    for entry in path.iterdir():
        entry.unlink()
    path.rmdir()
    path.parent.rmdir()


def web(node: HookNode, user: pwd.struct_passwd | None, *args: str) -> subprocess.CompletedProcess[bytes]:
    as_user = ["runuser", "-u", user.pw_name, "--"] if user else []
    return node.run([*as_user, str(node.balance), "--web", *args])


def test_the_code_is_left_as_the_users_own_private_file(web_node: HookNode, spool: Path,
                                                         alice: pwd.struct_passwd) -> None:
    result = web(web_node, alice, "abcd-efgh")
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout.decode() == (
        f"gpuledger: code ABCD-EFGH left for the console as {alice.pw_name}.\n"
        f"The waiting page ({URL}) will log you in within a few seconds.\n")
    [path] = spool.iterdir()
    info = path.lstat()
    assert re.fullmatch(r"[0-9a-f]{24}", path.name)
    assert (info.st_uid, stat.S_IMODE(info.st_mode), path.read_text()) == (alice.pw_uid, 0o600, "ABCDEFGH\n")
    # What the node command then reads: the kernel's owner, the normalized code.
    [entry] = logincodes.collect(str(spool), uid_min=1)[0]
    assert (entry["user"], entry["code"]) == (alice.pw_name, "ABCDEFGH")


def test_without_a_code_it_sends_the_user_to_the_console(web_node: HookNode, node: HookNode, spool: Path,
                                                          alice: pwd.struct_passwd) -> None:
    result = web(web_node, alice)
    assert result.returncode == 0 and list(spool.iterdir()) == []
    assert result.stdout.decode() == (
        f"gpuledger: to log in to the console, open {URL}, then run the command its login page shows here.\n")
    unconfigured = web(node, alice)  # the shared node sets no console URL
    assert b"open the gpuledger console, then run" in unconfigured.stdout


@pytest.mark.parametrize("code", ["ABCD-EFG0", "ABCDEFG", "ABCD-EFGH-", "ABCDEFGHJ", "AB;CDEFGH", "ABCD EFGH",
                                  "ÄBCDEFGH"])
def test_a_malformed_code_is_a_usage_error_and_writes_nothing(web_node: HookNode, spool: Path,
                                                               alice: pwd.struct_passwd, code: str) -> None:
    result = web(web_node, alice, code)
    assert result.returncode == 2 and b"is not a console login code (like ABCD-EFGH)" in result.stderr
    assert list(spool.iterdir()) == []


def test_extra_arguments_root_and_a_missing_spool(web_node: HookNode, alice: pwd.struct_passwd) -> None:
    assert web(web_node, alice, "ABCD-EFGH", "more").returncode == 2
    as_root = web(web_node, None, "ABCD-EFGH")
    assert as_root.returncode == 1 and b"root cannot log in to the console" in as_root.stderr
    missing = web(web_node, alice, "ABCD-EFGH")  # no spool fixture: the directory does not exist
    assert missing.returncode == 1 and b"cannot leave the code in" in missing.stderr
