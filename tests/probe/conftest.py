"""Fixtures of the probe tests: test users (``glp-`` prefix), node configs, the NVML fake, the node command."""

import json
import pwd
import secrets
import subprocess

import pytest

from tests.probe import nvml_fake
from tests.probe.support import FIXTURES, install_node, is_root


@pytest.fixture
def fake_nvml(monkeypatch):
    """Install the NVML fake from a fixture name (``"a100_mig"``) for the current test."""

    def install(name):
        return nvml_fake.install(FIXTURES / "nvml" / (name + ".json"), monkeypatch.setattr)

    return install


@pytest.fixture
def write_config(tmp_path):
    """Write a node.json and return its path."""

    def write(**values):
        path = tmp_path / (f"node-{secrets.token_hex(3)}.json")
        path.write_text(json.dumps(values))
        return path

    return write


@pytest.fixture(scope="session")
def node_script(tmp_path_factory):
    return install_node(tmp_path_factory.mktemp("node"))


@pytest.fixture(scope="session")
def test_users():
    """Two throwaway accounts ``glp-<hex>-a`` and ``-b``, removed afterwards; yields their pwd entries."""
    if not is_root():
        pytest.skip("needs root to create test users")
    tag = secrets.token_hex(3)
    names = [f"glp-{tag}-a", f"glp-{tag}-b"]
    for name in names:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True)
    try:
        yield [pwd.getpwnam(name) for name in names]
    finally:
        for name in names:
            subprocess.run(["userdel", name], check=False, capture_output=True)


@pytest.fixture
def spawn():
    """Start processes as a test user; ``ready=True`` waits for their first line. All are reaped afterwards."""
    children = []

    def start(user, argv, ready=False, **kwargs):
        child = subprocess.Popen(
            argv,
            user=user.pw_uid,
            group=user.pw_gid,
            cwd="/",
            stdout=subprocess.PIPE if ready else subprocess.DEVNULL,
            text=True,
            **kwargs,
        )
        children.append(child)
        if ready:
            assert child.stdout.readline().strip() == "ready"
        return child

    yield start
    for child in children:
        if child.poll() is None:
            child.kill()
        child.wait()
        for stream in (child.stdin, child.stdout):
            if stream:
                stream.close()
