"""The hook scripts are shellcheck-clean (bash dialect, following the sourced hook)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.hooks.node import BALANCE, HOOK


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck_is_clean() -> None:
    result = subprocess.run(["shellcheck", "--external-sources", str(HOOK), str(BALANCE)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
