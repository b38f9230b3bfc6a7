"""Fixtures of the rollout tests: one lab (two nodes and a controller over real SSH) rolled out once per session."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.embedded import EmbeddedPostgres
from tests.harness.sshd import sshd_available
from tests.rollout.lab import OLDEST_PYTHON, Lab, Recap, build_wheelhouses


@pytest.fixture(scope="session")
def lab(pg_cluster: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if not sshd_available():
        pytest.skip("needs root and openssh-server")
    if not OLDEST_PYTHON.exists():
        pytest.skip(f"needs {OLDEST_PYTHON} (the oldest Python the node command supports)")
    wheelhouses = build_wheelhouses(Path(tmp_path_factory.mktemp("wheels")))
    assert pg_cluster.bindir is not None
    lab = Lab(pg_cluster.port, f"gla_{secrets.token_hex(4)}", wheelhouses, pg_cluster.bindir)
    try:
        yield lab.start()
    finally:
        lab.close()


@pytest.fixture(scope="session")
def rolled_out(lab: Lab) -> Recap:
    """The first run of site.yml on the fresh lab."""
    recap = lab.playbook("site.yml")
    assert recap.rc == 0, recap.explain()
    return recap
