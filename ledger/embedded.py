"""A throwaway PostgreSQL cluster under a local data directory.

Used by the README's main command when ``GPULEDGER_DATABASE_URL`` is unset, and by the test suite.
The system's PostgreSQL binaries are preferred (Debian's ``/usr/lib/postgresql/N/bin``); the
``pgserver`` wheel's bundled binaries are the fallback. PostgreSQL refuses to run as root, so when
we are root the cluster runs as the ``postgres`` system account (created by Debian's server package)
or, failing that, a ``gpuledger-pg`` system account created on first use.

The cluster listens on 127.0.0.1 only, with ``trust`` authentication for loopback and the socket in the
data directory: it is for a single machine's development and tests, never for production.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SUPERUSER = "postgres"
_FALLBACK_OS_USER = "gpuledger-pg"


class EmbeddedPostgresError(RuntimeError):
    """The throwaway cluster could not be created, started or stopped; ``output`` has the tool's words."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(f"{message}\n{output}".strip())
        self.output = output


def find_bindir() -> Path:
    """Directory holding ``initdb``, ``pg_ctl`` and ``postgres``: the system's newest, else pgserver's."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        reverse=True,
    )
    for candidate in candidates:
        if (Path(candidate) / "initdb").exists():
            return Path(candidate)
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    try:
        import pgserver
    except ImportError as exc:
        raise EmbeddedPostgresError(
            "no PostgreSQL binaries found: install Debian's postgresql package or the pgserver wheel"
        ) from exc
    bindir = Path(pgserver.__file__).parent / "pginstall" / "bin"
    if not (bindir / "initdb").exists():
        raise EmbeddedPostgresError(f"pgserver is installed but {bindir}/initdb is missing")
    return bindir


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _os_user_for_cluster() -> pwd.struct_passwd | None:
    """The account to run PostgreSQL as, or None to run as ourselves (when not root)."""
    if os.geteuid() != 0:
        return None
    for name in (SUPERUSER, _FALLBACK_OS_USER):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", _FALLBACK_OS_USER],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam(_FALLBACK_OS_USER)


@dataclass
class EmbeddedPostgres:
    """A cluster in ``datadir``; ``start()`` initialises it on first use, ``stop()`` shuts it down.

    Whoever calls ``start()`` owns the server process and must call ``stop()``.
    """

    datadir: Path
    port: int = 0
    bindir: Path | None = None

    def __post_init__(self) -> None:
        self.datadir = Path(self.datadir).resolve()
        self.bindir = self.bindir or find_bindir()
        self._os_user = _os_user_for_cluster()

    def url(self, user: str = SUPERUSER, database: str = "postgres", password: str | None = None) -> str:
        auth = f"{user}:{password}" if password else user
        return f"postgresql+psycopg://{auth}@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str) -> str:
        assert self.bindir is not None
        cmd = [str(self.bindir / argv[0]), *argv[1:]]
        kwargs: dict[str, object] = {}
        if self._os_user is not None:
            uid, gid = self._os_user.pw_uid, self._os_user.pw_gid
            kwargs["user"], kwargs["group"], kwargs["extra_groups"] = uid, gid, []
            kwargs["cwd"] = "/"
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
        if proc.returncode != 0:
            raise EmbeddedPostgresError(f"{argv[0]} failed with exit status {proc.returncode}", proc.stderr)
        return str(proc.stdout)

    def _ensure_datadir(self) -> None:
        self.datadir.mkdir(parents=True, exist_ok=True)
        if self._os_user is not None:
            for path in [self.datadir, *self.datadir.rglob("*")]:
                os.lchown(path, self._os_user.pw_uid, self._os_user.pw_gid)
            # The service account must be able to reach the data directory through its parents.
            parent = self.datadir.parent
            while parent != parent.parent:
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    os.chmod(parent, mode | 0o001)
                parent = parent.parent
        os.chmod(self.datadir, 0o700)

    @property
    def initialised(self) -> bool:
        return (self.datadir / "PG_VERSION").exists()

    @property
    def running(self) -> bool:
        return (self.datadir / "postmaster.pid").exists()

    def start(self, timeout: float = 60.0) -> EmbeddedPostgres:
        self._ensure_datadir()
        if not self.initialised:
            self._run(
                "initdb", "-D", str(self.datadir), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8",
                "--locale=C.UTF-8", "--no-sync",
            )
        if self.running:
            self._stop_quietly()
        self.port = self.port or _free_port()
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.datadir}"
            " -c fsync=on -c max_connections=200 -c shared_buffers=128MB"
        )
        self._run(
            "pg_ctl", "start", "-D", str(self.datadir), "-w", "-t", str(int(timeout)),
            "-o", options, "-l", str(self.datadir / "server.log"),
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        raise EmbeddedPostgresError(f"PostgreSQL did not accept connections on port {self.port}")

    def _stop_quietly(self) -> None:
        try:
            self._run("pg_ctl", "stop", "-D", str(self.datadir), "-m", "immediate", "-w")
        except EmbeddedPostgresError:
            (self.datadir / "postmaster.pid").unlink(missing_ok=True)

    def stop(self, mode: str = "fast") -> None:
        if self.running:
            self._run("pg_ctl", "stop", "-D", str(self.datadir), "-m", mode, "-w")

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
