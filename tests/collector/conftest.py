"""Controller test fixtures: real sshd nodes on loopback, a dedicated client key, a managed known_hosts."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from ledger.embedded import EmbeddedPostgres
from tests.harness.sshd import SshdNode, ensure_user, generate_key, remove_user, sshd_available

NODE_USER = "glc-node"
NODE_PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
needs_sshd = pytest.mark.skipif(not sshd_available(), reason="needs root and openssh-server")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class FakeCommand:
    """The stand-in node command, installed where the node account can read it, with its run log."""

    directory: Path

    @property
    def argv(self) -> list[str]:
        # The node account cannot reach the venv under /root; nodes run their own Python.
        return [NODE_PYTHON, "-I", str(self.directory / "fake_node_command.py")]

    def runs(self) -> list[str]:
        log = self.directory / "runs.log"
        return log.read_text().splitlines() if log.exists() else []


@pytest.fixture
def fake_command() -> Iterator[FakeCommand]:
    # pytest's tmp_path is private to root; the node account must read the script and append to its log.
    directory = Path(tempfile.mkdtemp(prefix="glc-fake-node-", dir="/run" if os.geteuid() == 0 else None))
    os.chmod(directory, 0o755)
    shutil.copy(Path(__file__).with_name("fake_node_command.py"), directory / "fake_node_command.py")
    os.chmod(directory / "fake_node_command.py", 0o644)
    (directory / "runs.log").touch(mode=0o666)
    os.chmod(directory / "runs.log", 0o666)
    yield FakeCommand(directory)
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def node_user() -> Iterator[str]:
    if not sshd_available():
        pytest.skip("needs root and openssh-server")
    ensure_user(NODE_USER)
    yield NODE_USER
    remove_user(NODE_USER)


@pytest.fixture(scope="session")
def client_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_key(tmp_path_factory.mktemp("controller-key") / "id_ed25519", comment="gpuledger-controller")


def forced_command_line(client_key: Path, argv: list[str]) -> str:
    """The authorized_keys line the rollout installs, with ``argv`` as the forced command."""
    public = client_key.with_name(client_key.name + ".pub").read_text().strip()
    command = " ".join(argv).replace('"', '\\"')
    return f'restrict,command="{command}" {public}'


@pytest.fixture
def sshd_node(tmp_path: Path, node_user: str, client_key: Path, fake_command: FakeCommand) -> Iterator[SshdNode]:
    line = forced_command_line(client_key, fake_command.argv)
    with SshdNode(tmp_path / "sshd", authorized_keys={node_user: [line]}) as node:
        yield node


@pytest.fixture(scope="session")
def plain_db_url(pg_cluster: EmbeddedPostgres) -> str:
    """A database with no schema in it, for tests of database mechanics (lease, backoff)."""
    admin = create_engine(pg_cluster.url(), isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as connection:
        connection.execute(text("DROP DATABASE IF EXISTS glc_plain"))
        connection.execute(text("CREATE DATABASE glc_plain"))
    admin.dispose()
    return pg_cluster.url(database="glc_plain")


@dataclass(frozen=True)
class Database:
    """A migrated gpuledger database: ``admin_url`` (superuser) and ``app_url`` (the app role)."""

    admin_url: str
    app_url: str


def migrated_database(pg_cluster: EmbeddedPostgres, name: str, every_chain: bool = False) -> Database:
    """A fresh database migrated as a controller-only install does (ledger and collector), or with
    ``every_chain`` as ``gpuledger db upgrade`` does (the api's and control's chains too)."""
    from collector.migrations import upgrade_collector
    from gpuledger.main import upgrade_all
    from ledger.bootstrap import bootstrap
    from ledger.migrate import upgrade_ledger

    admin = create_engine(pg_cluster.url(), isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
    admin_url = bootstrap(pg_cluster.url(), name)
    if every_chain:
        upgrade_all(admin_url, out=lambda _: None)
    else:
        upgrade_ledger(admin_url)
        upgrade_collector(admin_url)
    return Database(admin_url=admin_url, app_url=pg_cluster.url(user="gpuledger_app", database=name))


@pytest.fixture
def database(pg_cluster: EmbeddedPostgres, request: pytest.FixtureRequest) -> Database:
    """A fresh migrated database per test (about 0.3 s)."""
    return migrated_database(pg_cluster, "glc_" + request.node.name.lower().replace("[", "_").strip("]")[:40])


@pytest.fixture
def api_database(pg_cluster: EmbeddedPostgres, request: pytest.FixtureRequest) -> Database:
    """A fresh database with every chain: the api's and control's too, the tables admins drive the controller
    through."""
    return migrated_database(pg_cluster, "glca_" + request.node.name.lower().replace("[", "_").strip("]")[:39],
                             every_chain=True)
