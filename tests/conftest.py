"""Fixtures shared by every test package: one throwaway PostgreSQL cluster for the whole session.

Each test package builds on ``pg_cluster`` (for example by creating its own database from it);
nothing here mocks the database.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.embedded import EmbeddedPostgres


@pytest.fixture(scope="session")
def pg_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    cluster = EmbeddedPostgres(Path(tmp_path_factory.mktemp("pg")) / "data").start()
    try:
        yield cluster
    finally:
        cluster.stop(mode="immediate")


@pytest.fixture(autouse=True)
def _stdin_stays_blocking() -> Iterator[None]:
    """A test must not leave the shared stdin non-blocking: a killed ssh client that inherited it does that, and
    every later ansible-playbook then refuses to start. Failing here names the test that did it."""
    try:
        before = os.get_blocking(0)
    except OSError:  # no stdin at all: nothing to keep
        yield
        return
    yield
    if os.get_blocking(0) != before:
        os.set_blocking(0, before)
        pytest.fail("this test left stdin non-blocking (a child that inherited it: give it stdin=DEVNULL)")
