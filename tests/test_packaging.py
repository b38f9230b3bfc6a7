"""The release artefact: the wheel carries the licence (PEP 639 metadata) and the monitoring files, the build
backend has an upper bound, and constraints.txt pins every dependency the project names."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "--quiet", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True, timeout=300)
    (built,) = out.glob("gpuledger-*.whl")
    return zipfile.ZipFile(built)


def test_the_wheel_carries_the_licence_as_pep_639_metadata(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    text = wheel.read(metadata).decode()
    assert "License-Expression: Apache-2.0" in text.splitlines()
    assert "License-File: LICENSE" in text.splitlines()
    licence = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
    assert licence and b"Apache License" in wheel.read(licence[0])
    assert (ROOT / "LICENSE").read_bytes() == wheel.read(licence[0])


def test_the_wheel_ships_the_alert_rules_and_the_dashboard(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    for name in ("alerts.yml", "alerts_test.yml", "dashboard.json"):
        path = f"collector/monitoring/{name}"
        assert path in names, sorted(n for n in names if n.startswith("collector/"))
        assert wheel.read(path) == (ROOT / path).read_bytes()


def test_the_build_backend_has_an_upper_bound() -> None:
    (requirement,) = [Requirement(r) for r in PYPROJECT["build-system"]["requires"]]
    assert requirement.name == "setuptools"
    # 77 is the first release with PEP 639's license string; the next major is kept out until tried
    assert "77" in requirement.specifier and "81" not in requirement.specifier
    assert PYPROJECT["project"]["license"] == "Apache-2.0"


def test_constraints_pin_every_dependency_and_not_the_project() -> None:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    assert "gpuledger" not in pins
    project = PYPROJECT["project"]
    extras = [r for group in project["optional-dependencies"].values() for r in group]
    # dev names the project's own extras ("gpuledger[parquet]"): their requirements are checked as themselves
    named = [r for r in map(Requirement, project["dependencies"] + extras) if r.name != "gpuledger"]
    for requirement in named:
        if requirement.marker is None or requirement.marker.evaluate():
            name = re.sub(r"[-_.]+", "-", requirement.name).lower()
            assert name in pins, f"{requirement.name} is not pinned in constraints.txt"
            assert pins[name] in requirement.specifier, f"{name}=={pins[name]} is outside {requirement.specifier}"
    bootstrap = (ROOT / "scripts" / "bootstrap").read_text()
    assert "-c constraints.txt" in bootstrap
