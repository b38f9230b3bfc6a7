"""The node command as a whole process: install layout, SSH mode, config, Python 3.8, imports, a real sshd."""

import ast
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import jsonschema
import pytest

from probe import nvml
from tests.harness.sshd import SshdNode, ensure_user, generate_key, remove_user, sshd_available
from tests.probe.support import FIXTURES, PY38, ROOT, install_node, run_node

SCHEMA = json.loads((ROOT / "docs" / "sample-schema.json").read_text())
FOREIGN = ("ledger", "collector", "api", "gpuledger", "tests", "psutil", "pynvml")


def test_sample_validates_and_the_real_no_driver_path_degrades(node_script):
    status, document, _ = run_node(node_script, ["sample"])
    assert status == 0
    jsonschema.validate(document, SCHEMA)
    if not nvml.nvidia_present("/proc"):
        assert document["gpus"] == []
        assert {"source": "nvml", "reason": "no_nvidia_device"}.items() <= document["degraded"][0].items()


def test_ssh_mode_reads_only_ssh_original_command_and_the_fixed_config(node_script, tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    status, result, _ = run_node(node_script, ["--config", str(broken), "version"])
    assert (status, result["error"]["kind"]) == (5, "config")
    status, result, _ = run_node(node_script, ["version"], env={"GPULEDGER_NODE_CONFIG": str(broken)})
    assert status == 5
    status, result, _ = run_node(node_script, ssh_command="version", env={"GPULEDGER_NODE_CONFIG": str(broken)})
    assert (status, result["verb"]) == (0, "version")  # over SSH the config path cannot be redirected
    status, result, stderr = run_node(node_script, ["version"], ssh_command="version")
    assert (status, result["error"]["reason"]) == (2, "arguments_over_ssh")
    assert stderr.startswith("gpuledger-node: refused arguments_over_ssh")
    status, result, _ = run_node(node_script, ssh_command="sample; id")
    assert (status, result["error"]["reason"]) == (2, "bad_word")


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"exempt_users": "alice"}, "exempt_users"),
        ({"uid_min": "1000"}, "uid_min"),
        ({"kill_grace_seconds": 1.5}, "kill_grace_seconds"),
        ({"cgroup_parent": "../escape"}, "cgroup_parent"),
        ({"proc_root": "relative"}, "proc_root"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_a_bad_config_names_its_key(node_script, tmp_path, config, key):
    path = tmp_path / "node.json"
    path.write_text(json.dumps(config))
    status, result, _ = run_node(node_script, ["--config", str(path), "version"])
    assert (status, result["error"]["kind"], result["error"]["reason"]) == (5, "config", key)


def test_the_probe_package_imports_nothing_outside_stdlib(tmp_path):
    code = (
        "import io, sys; from probe.node import main; main(['sample'], {}, io.BytesIO(), io.StringIO()); "
        "main(['quota-get', '0'], {}, io.BytesIO(), io.StringIO()); print(' '.join(sorted(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); {code}"],
                          capture_output=True, text=True, check=True)
    loaded = {name.split(".")[0] for name in done.stdout.split()}
    expected_absent = set(FOREIGN) - ({"pynvml"} if nvml.nvidia_present("/proc") else set())
    assert loaded & expected_absent == set()


def test_the_syntax_floor_is_python_3_8():
    done = subprocess.run(
        [str(Path(sys.executable).with_name("vermin")), "-t=3.8-", "--no-tips", "--violations", "--eval-annotations",
         "probe"],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for path in (ROOT / "probe").glob("*.py"):
        ast.parse(path.read_text(), str(path), feature_version=(3, 8))


@pytest.mark.skipif(not PY38.exists(), reason="no Python 3.8 interpreter here")
def test_the_node_command_runs_on_python_3_8(tmp_path):
    script = install_node(tmp_path / "py38", PY38)
    status, document, stderr = run_node(script, ["sample"])
    assert status == 0, stderr
    jsonschema.validate(document, SCHEMA)
    status, version, _ = run_node(script, ["version"])
    assert version["python"].startswith("3.8.")
    status, result, _ = run_node(script, ssh_command="quota-get 1001 $(id)")
    assert status == 2


def test_a_simulated_gpu_node_runs_the_real_command_with_the_nvml_fake():
    env = dict(os.environ, GPULEDGER_NVML_FAKE=str(FIXTURES / "nvml" / "a100_mig.json"))
    done = subprocess.run([sys.executable, "-m", "tests.probe.fake_node", "sample"], cwd=ROOT, env=env,
                          capture_output=True, check=True)
    document = json.loads(done.stdout)
    jsonschema.validate(document, SCHEMA)
    assert [gpu["name"] for gpu in document["gpus"]] == ["NVIDIA A100-SXM4-80GB"] * 2


@pytest.fixture
def ssh_node(tmp_path):
    """A real sshd whose test account's only way in is the node command as its forced command."""
    if not sshd_available():
        pytest.skip("needs root and openssh-server")
    user = f"glp-{secrets.token_hex(3)}-ssh"
    ensure_user(user, shell="/bin/sh")
    public = Path(tempfile.mkdtemp(prefix="gpuledger-test-node-"))
    public.chmod(0o755)
    script = install_node(public, "/usr/bin/python3")
    for path in public.rglob("*"):
        path.chmod(0o755 if path.is_dir() or path == script else 0o644)
    key = generate_key(tmp_path / "controller_key")
    forced = f'restrict,command="{script}" {key.with_name("controller_key.pub").read_text().strip()}'
    sshd = SshdNode(tmp_path / "sshd", authorized_keys={user: [forced]})
    known = tmp_path / "known_hosts"
    try:
        with sshd:
            known.write_text(sshd.known_hosts_line() + "\n")
            yield sshd, user, key, known
    finally:
        remove_user(user)
        shutil.rmtree(public)


def test_over_real_ssh_only_allow_listed_verbs_run(ssh_node):
    sshd, user, key, known = ssh_node

    def ssh(command):
        return subprocess.run(
            ["ssh", "-F", "/dev/null", "-i", str(key), "-p", str(sshd.port), "-o", "BatchMode=yes",
             "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known}", "-o", "IdentitiesOnly=yes",
             f"{user}@127.0.0.1", command],
            capture_output=True, text=True, timeout=60,
        )

    done = ssh("sample")
    assert done.returncode == 0, done.stderr + sshd.log()
    jsonschema.validate(json.loads(done.stdout), SCHEMA)
    for attempt in ("sample; id", "sample && touch /tmp/pwned", "$(id)", "bash -i", "sample\nid", "scp -t /tmp"):
        done = ssh(attempt)
        assert done.returncode == 2, (attempt, done.stdout, done.stderr)
        assert json.loads(done.stdout)["error"]["kind"] == "refused"
        assert "gpuledger-node: refused" in done.stderr
