"""docs/api.md's curl examples run as written (bash + curl) against a live app on loopback."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.api.conftest import Tokens

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def _example_block() -> str:
    blocks = re.findall(r"^```bash\n(.*?)^```$", DOC.read_text(), flags=re.S | re.M)
    assert len(blocks) == 1, "docs/api.md should hold one ```bash block of curl examples"
    return blocks[0]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_documented_curl_flows_succeed(base_url: str, issued: Tokens, tmp_path: Path) -> None:
    # ``issued`` made alice already: the block creates a user, so it runs on a name still free.
    script = _example_block().replace('"name": "alice"', '"name": "carol"').replace("alice", "carol")
    env = {"PATH": os.environ["PATH"], "API": base_url, "TOKEN": issued.admin}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert '"currency":"CNY"' in done.stdout and '"available":"100.000000"' in done.stdout
    assert (tmp_path / "ledger.beancount").read_text().strip()
    assert '"action":"exempt"' in done.stdout and done.stdout.rstrip().endswith("[]")   # no nodes registered
