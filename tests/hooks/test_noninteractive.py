"""Non-interactive shells (ssh host cmd, scp, sftp, git over ssh, bash -c, bash -lc) print nothing and behave
byte for byte as without the hook, even for a user whose status says blocked; interactive shells keep their
options, traps and environment."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness import sshd as sshd_module
from tests.harness.sshd import SshdNode, generate_key, sshd_available
from tests.hooks.node import ENV, HookNode, status_fields, write_rc
from tests.hooks.terminal import Terminal

SCRIPT = ("python3 -c 'import sys; data = sys.stdin.buffer.read(); sys.stdout.buffer.write(data[::-1]); "
          "print(\"to stderr\", file=sys.stderr); raise SystemExit(3)'")
DATA = os.urandom(1 << 20)  # a megabyte, as scp or rsync would stream it
MARKER = ".rc-was-read"
SOCKET_BYTES = 1 << 15  # sent before the command starts, so within the socket's buffer


@pytest.fixture
def blocked(node: HookNode, alice: pwd.struct_passwd) -> pwd.struct_passwd:
    """alice, blocked (the hook would refuse her python3), with a ~/.bashrc that leaves a marker when read."""
    node.status.write(alice.pw_uid, status_fields(alice, tier="blocked", gpu_blocked=1))
    rc = Path(alice.pw_dir) / ".bashrc"
    write_rc(alice, f": > ~/{MARKER}\n" + rc.read_text())
    return alice


def _same_either_way(node: HookNode, command: list[str]) -> subprocess.CompletedProcess[bytes]:
    hooked_run, plain_run = (node.run(command, hooked=hooked, stdin=DATA) for hooked in (True, False))
    assert (hooked_run.stdout, hooked_run.stderr, hooked_run.returncode) == (
        plain_run.stdout, plain_run.stderr, plain_run.returncode)
    return hooked_run


def _check_script_result(result: subprocess.CompletedProcess[bytes]) -> None:
    assert result.returncode == 3
    assert result.stdout == DATA[::-1]
    assert result.stderr == b"to stderr\n"


def test_login_shell_command_is_unchanged(node: HookNode, blocked: pwd.struct_passwd) -> None:
    # `runuser -l user -c cmd` is `bash -l -c cmd`: /etc/profile and /etc/profile.d run, non-interactively.
    _check_script_result(_same_either_way(node, ["runuser", "-l", blocked.pw_name, "-c", SCRIPT]))


def test_plain_bash_c_is_unchanged(node: HookNode, blocked: pwd.struct_passwd) -> None:
    _check_script_result(_same_either_way(node, ["runuser", "-u", blocked.pw_name, "--", "bash", "-c", SCRIPT]))


def test_ssh_style_command_reading_rc_files_is_unchanged(node: HookNode, blocked: pwd.struct_passwd) -> None:
    """bash started by sshd (SSH_CLIENT set, stdin a socket) reads /etc/bash.bashrc and ~/.bashrc."""
    env = {**ENV, "HOME": blocked.pw_dir, "SSH_CLIENT": "127.0.0.1 40000 22",
           "SSH_CONNECTION": "127.0.0.1 40000 127.0.0.1 22"}
    results = []
    for hooked in (True, False):
        Path(blocked.pw_dir, MARKER).unlink(missing_ok=True)
        ours, theirs = socket.socketpair()
        with ours, theirs:
            ours.sendall(DATA[:SOCKET_BYTES])
            ours.shutdown(socket.SHUT_WR)
            results.append(subprocess.run(
                node.argv(["setpriv", f"--reuid={blocked.pw_uid}", f"--regid={blocked.pw_gid}", "--init-groups",
                           "bash", "-c", SCRIPT], hooked=hooked),
                stdin=theirs.fileno(), capture_output=True, env=env, timeout=60))
        assert Path(blocked.pw_dir, MARKER).exists(), "bash did not read the rc files: the case tests nothing"
    hooked_run, plain_run = results
    assert (hooked_run.stdout, hooked_run.stderr, hooked_run.returncode) == (
        plain_run.stdout, plain_run.stderr, plain_run.returncode)
    assert (hooked_run.returncode, hooked_run.stdout) == (3, DATA[:SOCKET_BYTES][::-1])


@pytest.fixture
def sshd_pair(node: HookNode, blocked: pwd.struct_passwd, tmp_path: Path,
              monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Callable[..., subprocess.CompletedProcess[bytes]],
                                                                 Path]]:
    """A real sshd with the hook installed and one without; ``ssh(hooked, *args)`` runs the OpenSSH client."""
    key = generate_key(tmp_path / "client_key")
    public = key.with_name("client_key.pub").read_text().strip()
    config = ["Subsystem sftp /usr/lib/openssh/sftp-server"]
    known = tmp_path / "known_hosts"
    nodes = {False: SshdNode(tmp_path / "sshd-plain", authorized_keys={blocked.pw_name: [public]},
                             extra_config=config).start()}
    with monkeypatch.context() as patch:
        patch.setattr(sshd_module, "SSHD", node.sshd_wrapper())
        nodes[True] = SshdNode(tmp_path / "sshd-hooked", authorized_keys={blocked.pw_name: [public]},
                               extra_config=config).start()
    try:
        known.write_text("".join(sshd.known_hosts_line() + "\n" for sshd in nodes.values()))
        options = ["-F", "/dev/null", "-i", str(key), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                   "-o", f"UserKnownHostsFile={known}", "-o", "IdentitiesOnly=yes"]

        def client(hooked: bool, program: str, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
            port = str(nodes[hooked].port)
            argv = [program, *options, "-p" if program == "ssh" else "-P", port,
                    *(arg.replace("HOST", f"{blocked.pw_name}@127.0.0.1") for arg in args)]
            return subprocess.run(argv, input=stdin, capture_output=True, timeout=60)

        yield client, tmp_path
    finally:
        for sshd in nodes.values():
            sshd.stop()


@pytest.mark.skipif(not sshd_available() or shutil.which("git") is None, reason="needs openssh-server and git")
def test_real_ssh_command_scp_sftp_and_git_are_unchanged(
        sshd_pair: tuple[Callable[..., subprocess.CompletedProcess[bytes]], Path],
        blocked: pwd.struct_passwd) -> None:
    client, tmp_path = sshd_pair
    upload = tmp_path / "upload.bin"
    upload.write_bytes(DATA)
    home = Path(blocked.pw_dir)
    subprocess.run(["git", "init", "-q", "--bare", str(home / "repo.git")], check=True)
    subprocess.run(["chown", "-R", f"{blocked.pw_uid}:{blocked.pw_gid}", str(home / "repo.git")], check=True)
    seen = []
    for hooked in (True, False):
        command = client(hooked, "ssh", "HOST", SCRIPT, stdin=DATA)
        _check_script_result(command)
        copied = client(hooked, "scp", "-q", str(upload), "HOST:copy.bin")
        assert (home / "copy.bin").read_bytes() == DATA
        (home / "copy.bin").unlink()
        batch = client(hooked, "sftp", "-q", "-b", "-", "HOST", stdin=b"ls -1 repo.git/HEAD\n")
        assert batch.stdout.splitlines()[-1] == b"repo.git/HEAD"
        fetch = client(hooked, "ssh", "HOST", "git-upload-pack repo.git", stdin=b"0000")
        assert fetch.returncode == 0 and fetch.stdout.startswith(b"00"), fetch
        seen.append([(run.returncode, run.stdout, run.stderr) for run in (command, copied, batch, fetch)])
    assert seen[0] == seen[1]
    # The same sshd does run the hook for an interactive login: the cases above test something.
    login = client(True, "ssh", "-tt", "HOST", stdin=b"exit\n")
    assert b"gpuledger: balance" in login.stdout


def test_interactive_shell_keeps_options_traps_and_environment(node: HookNode, alice: pwd.struct_passwd,
                                                                terminal: Callable[..., Terminal]) -> None:
    node.status.write(alice.pw_uid, status_fields(alice, tier="warning"))
    # The user's own BASH_REMATCH and $? survive a wrapped command; the only variable added is the guard.
    state = ("[[ keep =~ e+ ]]; python3 -c 'raise SystemExit(5)' 2>/dev/null; echo $? ${BASH_REMATCH[*]}; "
             "echo $-; set +o; shopt -p; trap -p; env -u _ | sort; compgen -v | grep -vx _gpuledger_loaded")
    seen = []
    for hooked in (True, False):
        shell = terminal(alice, hooked=hooked)
        shell.login()
        seen.append(shell.type(state))
    assert seen[0].startswith("5 ee\n")
    assert seen[0] == seen[1]
