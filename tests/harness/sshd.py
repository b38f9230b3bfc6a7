"""Real OpenSSH ``sshd`` processes on loopback, as test nodes.

Each ``SshdNode`` runs its own ``/usr/sbin/sshd -D`` with a private config, host key, authorized-keys
directory and log, on 127.0.0.1 and a free port. The system's sshd and its configuration are never
touched. Requires root (sshd's privilege separation) and Debian's ``openssh-server`` package.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

SSHD = Path("/usr/sbin/sshd")
SSH_KEYGEN = "ssh-keygen"


class SshdError(RuntimeError):
    """sshd could not be configured or started; ``log`` holds what it said."""

    def __init__(self, message: str, log: str = "") -> None:
        super().__init__(f"{message}\n{log}".strip())
        self.log = log


def sshd_available() -> bool:
    return SSHD.exists() and shutil.which(SSH_KEYGEN) is not None and os.geteuid() == 0


def generate_key(path: Path, key_type: str = "ed25519", comment: str = "gpuledger-test") -> Path:
    """Write a new private key at ``path`` (public key beside it as ``.pub``) and return ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for existing in (path, path.with_name(path.name + ".pub")):
        existing.unlink(missing_ok=True)
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", key_type, "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class SshdNode:
    """One sshd on 127.0.0.1.

    ``authorized_keys`` maps a local user name to the lines of its authorized_keys file (options such as
    ``restrict,command="..."`` included). ``extra_config`` lines are appended to the generated
    sshd_config. Whoever calls ``start()`` must call ``stop()`` (or use it as a context manager).
    """

    workdir: Path
    authorized_keys: dict[str, list[str]] = field(default_factory=dict)
    extra_config: list[str] = field(default_factory=list)
    port: int = 0
    host_key_type: str = "ed25519"
    # PAM's service name is sshd's program name: a link to sshd named ``sshd-X`` reads /etc/pam.d/sshd-X, so a
    # test can give its sshd a PAM stack of its own without touching the system's /etc/pam.d/sshd. None: the
    # module's SSHD, read at start so that a test may point it at a wrapper.
    binary: Path | None = None
    use_pam: bool = False
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.workdir, 0o755)
        self.host_key = self.workdir / f"ssh_host_{self.host_key_type}_key"
        if not self.host_key.exists():
            generate_key(self.host_key, self.host_key_type, comment="gpuledger-test-host")
        # sshd reads authorized_keys as the user, so they live under /run (root-owned, world-traversable)
        # rather than under pytest's private temporary tree.
        self.keys_dir = Path(tempfile.mkdtemp(prefix="gpuledger-test-sshd-", dir="/run"))
        self.config_path = self.workdir / "sshd_config"
        self.log_path = self.workdir / "sshd.log"

    @property
    def host_public_key(self) -> str:
        """The host key in OpenSSH public-key format (``type base64``), without its comment."""
        text = self.host_key.with_name(self.host_key.name + ".pub").read_text()
        key_type, blob = text.split()[:2]
        return f"{key_type} {blob}"

    def known_hosts_line(self, host: str = "127.0.0.1") -> str:
        """A known_hosts entry pinning this node's host key for ``host`` on its port."""
        name = host if self.port == 22 else f"[{host}]:{self.port}"
        return f"{name} {self.host_public_key}"

    def regenerate_host_key(self) -> None:
        """Give the node a new host key (takes effect at the next ``start()``): a host-key change."""
        generate_key(self.host_key, self.host_key_type, comment="gpuledger-test-host")

    def set_authorized_keys(self, user: str, lines: list[str]) -> None:
        self.authorized_keys[user] = list(lines)
        self._write_authorized_keys()

    def _write_authorized_keys(self) -> None:
        # sshd's StrictModes accepts root-owned, non-writable files and directories for any user.
        self.keys_dir.mkdir(exist_ok=True)
        os.chmod(self.keys_dir, 0o755)
        for user, lines in self.authorized_keys.items():
            pwd.getpwnam(user)  # fail early, naming the user, rather than sshd refusing silently
            target = self.keys_dir / user
            target.write_text("".join(line.rstrip("\n") + "\n" for line in lines))
            os.chmod(target, 0o644)

    def _write_config(self) -> None:
        lines = [
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {self.host_key}",
            f"PidFile {self.workdir / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.keys_dir}/%u",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin no",
            f"UsePAM {'yes' if self.use_pam else 'no'}",
            "StrictModes yes",
            "PrintMotd no",
            "PrintLastLog no",
            "MaxStartups 200:30:400",
            "MaxSessions 64",
            "LogLevel VERBOSE",
            *self.extra_config,
        ]
        self.config_path.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 10.0) -> SshdNode:
        if self._process is not None:
            raise SshdError("sshd is already running for this node")
        self.port = self.port or _free_port()
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege-separation directory
        self._write_authorized_keys()
        self._write_config()
        binary = self.binary or SSHD
        check = subprocess.run([str(binary), "-t", "-f", str(self.config_path)], capture_output=True, text=True)
        if check.returncode != 0:
            raise SshdError("sshd -t rejected the test configuration", check.stderr)
        log = open(self.log_path, "ab")
        try:
            self._process = subprocess.Popen(
                [str(binary), "-D", "-e", "-f", str(self.config_path)],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise SshdError(f"sshd exited with status {self._process.returncode}", self.log())
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise SshdError(f"sshd did not listen on port {self.port} within {timeout} s", self.log())

    def stop(self) -> None:
        process, self._process = self._process, None
        shutil.rmtree(self.keys_dir, ignore_errors=True)
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> SshdNode:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def ensure_user(name: str, shell: str = "/bin/bash", home: Path | None = None) -> pwd.struct_passwd:
    """Create the local user ``name`` if missing (tests only; callers remove it with ``remove_user``)."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    argv = ["useradd", "--create-home", "--shell", shell]
    if home is not None:
        argv += ["--home-dir", str(home)]
    subprocess.run([*argv, name], check=True, capture_output=True)
    # An account with a locked password ("!") is refused by sshd even for keys when UsePAM is off.
    subprocess.run(["usermod", "-p", "*", name], check=True, capture_output=True)
    return pwd.getpwnam(name)


def remove_user(name: str) -> None:
    subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True)
    subprocess.run(["userdel", "--remove", name], capture_output=True)
