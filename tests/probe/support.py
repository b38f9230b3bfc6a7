"""Helpers shared by the probe tests: paths, the node-command install layout, running it."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
PY38 = Path("/root/.pyenv/versions/3.8.18/bin/python")
NODE_SCRIPT = """#!{python} -I
import sys
sys.path.insert(0, {lib!r})
from probe.node import main
sys.exit(main())
"""


def drop_box(path):
    """A fresh drop-box directory at ``path`` as the node role makes it (the test's owner, mode 1733)."""
    path.mkdir()
    os.chmod(path, 0o1733)
    return path


def is_root():
    return os.geteuid() == 0


needs_root = pytest.mark.skipif(not is_root(), reason="needs root (cgroups, test users, ttys)")


def install_node(prefix, python=sys.executable):
    """The node role's layout: ``<prefix>/lib/probe`` and ``<prefix>/bin/gpuledger-node``; returns the script."""
    lib = prefix / "lib"
    shutil.copytree(ROOT / "probe", lib / "probe", ignore=shutil.ignore_patterns("__pycache__"))
    script = prefix / "bin" / "gpuledger-node"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(NODE_SCRIPT.format(python=python, lib=str(lib)))
    script.chmod(0o755)
    subprocess.run([str(python), "-m", "compileall", "-q", str(lib / "probe")], check=True)
    return script


def run_node(script, words=None, ssh_command=None, stdin=b"", env=None, timeout=120):
    """Run the installed node command; ``ssh_command`` runs it the way the forced command does."""
    environ = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"}
    environ.update(env or {})
    if ssh_command is not None:
        environ["SSH_ORIGINAL_COMMAND"] = ssh_command
    done = subprocess.run(
        [str(script)] + list(words or []), input=stdin, capture_output=True, env=environ, timeout=timeout
    )
    document = json.loads(done.stdout) if done.stdout.strip() else None
    return done.returncode, document, done.stderr.decode("utf-8", "replace")
