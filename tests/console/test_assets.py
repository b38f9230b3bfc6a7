"""Front-end files: the committed vendor files are exactly what the lock file's packages ship (a fresh
`npm ci` through scripts/vendor-assets), each has its license beside it, the pages link only files the app
serves, and those are served with the cache and security headers the console promises."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import pytest

from api.console.render import CSP, STATIC_DIR, TEMPLATE_DIR, static_url

ROOT = Path(__file__).resolve().parents[2]
VENDOR = STATIC_DIR / "vendor"


def _sums(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())
            if p.name != "SHA256SUMS"}


def test_committed_files_match_their_recorded_sums() -> None:
    lines = (line.split("  ", 1) for line in (VENDOR / "SHA256SUMS").read_text().splitlines())
    recorded = {name: digest for digest, name in lines}
    assert recorded == _sums(VENDOR)
    names = set(recorded)
    for package in ("htmx", "uplot", "axe-core"):
        assert any(n.startswith(package) and n.endswith(".LICENSE") for n in names), package


def test_committed_files_are_what_a_fresh_npm_ci_gives(tmp_path: Path) -> None:
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed (scripts/test's CI installs it)")
    subprocess.run([str(ROOT / "scripts" / "vendor-assets"), str(tmp_path)], check=True, capture_output=True,
                   timeout=600)
    assert _sums(tmp_path) == _sums(VENDOR)


def test_templates_link_only_files_that_exist() -> None:
    for template in TEMPLATE_DIR.rglob("*.html"):
        for name in re.findall(r"static\('([^']+)'\)", template.read_text()):
            assert (STATIC_DIR / name).is_file(), (template.name, name)


def test_static_files_are_served_with_cache_and_security_headers(base_url: str) -> None:
    with httpx.Client(base_url=base_url) as c:
        vendored = c.get("/static/vendor/htmx-2.0.11.min.js")
        assert vendored.status_code == 200 and "immutable" in vendored.headers["cache-control"]
        own = c.get(static_url("console.css"))
        assert own.status_code == 200 and "max-age=31536000" in own.headers["cache-control"]
        stale = c.get("/static/console.css?v=000000000000")
        assert stale.headers["cache-control"] == "no-cache"
        assert c.get("/static/../api/app.py").status_code == 404
        page = c.get("/login")
        assert page.headers["content-security-policy"] == CSP and "default-src 'self'" in CSP
        assert "<script>" not in page.text and " style=" not in page.text
        assert c.get("/licenses").text.count("<pre") >= 3


def test_the_wheel_carries_what_the_console_needs_at_run_time(tmp_path: Path) -> None:
    """Templates, catalogs (.po, read at start) and every static file, vendored ones included."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "--quiet", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True, timeout=600)
    with zipfile.ZipFile(next(tmp_path.glob("gpuledger-*.whl"))) as wheel:
        shipped = set(wheel.namelist())
    console = ROOT / "api" / "console"
    needed = [*TEMPLATE_DIR.rglob("*.html"), *(console / "locale").rglob("*.po"),
              *(p for p in STATIC_DIR.rglob("*") if p.is_file())]
    assert len(needed) > 20
    assert [str(p.relative_to(ROOT)) for p in needed if str(p.relative_to(ROOT)) not in shipped] == []
