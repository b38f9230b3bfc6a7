"""The hit-aiot-ops shim served for real on loopback: the old check_quota.sh logic (curl, .status, .balance) gets
the right verdict for each tier and for a Linux name nobody maps; other addresses get nothing; it is off unless
turned on; nothing it answers creates a user."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.compat import CompatConfig
from api.config import ApiConfig
from ledger.errors import ConfigError
from ledger.service import Ledger
from tests.api.conftest import api_db, api_template, ledger, serving
from tests.ledger.conftest import cny

__all__ = ["api_db", "api_template", "ledger"]
CHECK_QUOTA = Path(__file__).with_name("check_quota.sh")
ON = CompatConfig(True, {"127.0.0.1": "gpu01"})


@pytest.fixture
def shim(ledger: Ledger) -> Iterator[str]:
    for user, amount in (("norma", "150"), ("wanda", "50"), ("lim", "5"), ("blake", "-5")):
        ledger.add_user(user, actor="test")
        ledger.adjust(user, cny(amount), idem_key=f"k-{user}", actor="test", reason="setup")
        ledger.map_linux_user("gpu01", f"{user}_l", user, actor="test")
    ledger.map_linux_user("gpu02", "other", "norma", actor="test")   # mapped on another node only
    with serving(create_app(ledger, ApiConfig(), compat=ON)) as url:
        yield url


def check_quota(url: str, linux_user: str, home: Path) -> tuple[int, str]:
    done = subprocess.run([str(CHECK_QUOTA), linux_user], env={"CONTROLLER_URL": url, "HOME": str(home),
                                                                "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=30, check=False)
    return done.returncode, done.stdout.strip()


def test_the_old_hook_gets_the_real_verdict_for_each_tier(shim: str, tmp_path: Path) -> None:
    assert check_quota(shim, "norma_l", tmp_path) == (0, "allow normal 150")
    assert check_quota(shim, "wanda_l", tmp_path) == (0, "allow warning 50")
    assert check_quota(shim, "lim_l", tmp_path) == (1, "deny limited 5")
    assert check_quota(shim, "blake_l", tmp_path) == (1, "deny blocked -5")
    # nobody maps it here (its mapping is gpu02's): 404, so the old hook falls back on its flag file
    assert check_quota(shim, "other", tmp_path) == (0, "allow unreachable")
    (tmp_path / ".gpu_blocked").write_text("blocked")
    assert check_quota(shim, "other", tmp_path) == (1, "deny flag-file")


def test_the_bodies_are_exactly_the_old_ones_and_create_nobody(shim: str, ledger: Ledger) -> None:
    users = [u.name for u in ledger.list_users()]
    body = httpx.get(f"{shim}/api/users/wanda_l/balance").text
    assert body == '{"username":"wanda_l","balance":50.000000,"status":"warning"}'
    response = httpx.get(f"{shim}/api/users/newcomer/balance")
    assert response.status_code == 404
    assert [u.name for u in ledger.list_users()] == users
    assert httpx.get(f"{shim}/api/registry/resolve", params={"node_id": "60001", "local_username": "lim_l"}).text == (
        '{"registered":true,"billing_username":"lim","whitelisted":false}')
    assert '"registered":false' in httpx.get(f"{shim}/api/registry/resolve", params={"local_username": "x"}).text
    queued = httpx.post(f"{shim}/api/gpu/request", json={"username": "lim_l", "gpu_type": "A100", "count": 1})
    assert queued.status_code == 501 and "gpu-request" in queued.json()["error"]
    assert httpx.get(f"{shim}/healthz").status_code == 200


def test_only_configured_node_addresses_are_answered(shim: str) -> None:
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2")) as other:
        response = other.get(f"{shim}/api/users/norma_l/balance")
    assert response.status_code == 403 and "norma" not in response.text


def test_off_by_default(ledger: Ledger) -> None:
    assert CompatConfig.from_env({}) == CompatConfig()
    with serving(create_app(ledger, ApiConfig())) as url:
        assert httpx.get(f"{url}/api/users/norma_l/balance").status_code == 404
    with pytest.raises(ConfigError, match="GPULEDGER_COMPAT_HIT_NODES"):
        CompatConfig.from_env({"GPULEDGER_COMPAT_HIT": "true"})
    assert CompatConfig.from_env({"GPULEDGER_COMPAT_HIT": "true", "GPULEDGER_COMPAT_HIT_NODES": "gpu01=10.0.0.1"}
                                 ) == CompatConfig(True, {"10.0.0.1": "gpu01"})
