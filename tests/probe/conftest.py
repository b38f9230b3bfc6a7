"""Fixtures of the probe tests: test users (``glp-`` prefix), node configs, the NVML fake, the node command."""

import json
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

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
def uid_min(test_users):
    """The lowest test user's uid as the policy's uid_min: every test user is a person, root and system users not."""
    return min(user.pw_uid for user in test_users)


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


@pytest.fixture
def parent(tmp_path):
    """A ``gpuledger-test-*`` cgroup parent and a node config using it; both hierarchies cleaned afterwards."""
    name = "gpuledger-test-" + secrets.token_hex(4)
    config = tmp_path / "node.json"
    config.write_text(json.dumps({"cgroup_parent": name}))
    yield name, config
    for hierarchy in ("cpu", "devices", "cpuacct"):
        path = f"/sys/fs/cgroup/{hierarchy}/{name}"
        if not os.path.isdir(path):
            continue
        for child in os.listdir(path):
            group = os.path.join(path, child)
            if os.path.isdir(group):
                for pid in Path(group, "cgroup.procs").read_text().split():
                    with open(f"/sys/fs/cgroup/{hierarchy}/cgroup.procs", "w") as procs:
                        procs.write(pid)
                os.rmdir(group)
        os.rmdir(path)


@pytest.fixture
def device():
    """A character device node major 195 (like /dev/nvidia0; no driver here) that test users can reach."""
    directory = tempfile.mkdtemp(prefix="gpuledger-test-dev-")
    os.chmod(directory, 0o755)
    path = os.path.join(directory, "nvidia0")
    os.mknod(path, 0o20666, os.makedev(195, 0))
    os.chmod(path, 0o666)  # mknod applies the umask
    yield path
    shutil.rmtree(directory)
