"""The API and console behind uvicorn's own TLS (GPULEDGER_API_TLS_CERT_FILE/_KEY_FILE): a real uvicorn on
loopback with a self-signed certificate made here by openssl. Over https every response carries HSTS and the
console's cookies are Secure; over plain http neither."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.config import ApiConfig
from ledger.errors import ConfigError
from ledger.service import Ledger
from tests.api.conftest import Tokens, serving
from tests.console.conftest import csrf_of

HSTS = "max-age=31536000"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


def cookie_flags(response: httpx.Response, name: str) -> set[str]:
    [line] = [v for k, v in response.headers.multi_items() if k == "set-cookie" and v.startswith(name + "=")]
    return {part.strip().split("=")[0].lower() for part in line.split(";")[1:]}


def test_https_serves_hsts_and_secure_cookies(ledger: Ledger, issued: Tokens, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    config = ApiConfig(tls_cert_file=str(cert), tls_key_file=str(key))
    with serving(create_app(ledger, config), config) as url, \
            httpx.Client(base_url=url, verify=ssl.create_default_context(cafile=str(cert)), timeout=30) as c:
        assert url.startswith("https://")
        health = c.get("/healthz")
        assert health.status_code == 200 and health.headers["strict-transport-security"] == HSTS
        assert c.get("/v1/me").headers["strict-transport-security"] == HSTS  # errors too (401)
        login = c.get("/login")
        assert login.headers["strict-transport-security"] == HSTS and "secure" in cookie_flags(login, "gl_pre")
        started = c.post("/login/ssh", data={"csrf": csrf_of(login.text)})
        assert started.status_code == 303 and "secure" in cookie_flags(started, "gl_ssh_login")
        done = c.post("/login", data={"csrf": csrf_of(login.text), "token": issued.admin, "next": "/"})
        assert done.status_code == 303 and {"secure", "httponly"} <= cookie_flags(done, "gl_session")


def test_plain_http_has_no_hsts_and_no_secure_cookie(client: httpx.Client) -> None:
    login = client.get("/login")
    assert "strict-transport-security" not in login.headers and "secure" not in cookie_flags(login, "gl_pre")


def test_a_trusted_proxys_https_counts_as_https(ledger: Ledger) -> None:
    config = ApiConfig(trusted_proxies=("127.0.0.1",))
    with serving(create_app(ledger, config), config) as url, httpx.Client(base_url=url, timeout=30) as c:
        assert c.get("/healthz", headers={"X-Forwarded-Proto": "https"}).headers["strict-transport-security"] == HSTS
        assert "strict-transport-security" not in c.get("/healthz").headers


def test_the_tls_files_are_both_or_neither_and_readable(certificate: tuple[Path, Path], tmp_path: Path) -> None:
    cert, key = certificate
    both = ApiConfig.from_env({"GPULEDGER_API_TLS_CERT_FILE": str(cert), "GPULEDGER_API_TLS_KEY_FILE": str(key)})
    assert (both.uvicorn_options()["ssl_certfile"], both.uvicorn_options()["ssl_keyfile"]) == (str(cert), str(key))
    assert both.console_url == "https://127.0.0.1:8470/"
    assert "ssl_certfile" not in ApiConfig.from_env({}).uvicorn_options()
    with pytest.raises(ConfigError) as only_cert:
        ApiConfig.from_env({"GPULEDGER_API_TLS_CERT_FILE": str(cert)})
    assert only_cert.value.key == "GPULEDGER_API_TLS_KEY_FILE"
    with pytest.raises(ConfigError) as missing:
        ApiConfig.from_env({"GPULEDGER_API_TLS_CERT_FILE": str(tmp_path / "nope.pem"),
                            "GPULEDGER_API_TLS_KEY_FILE": str(key)})
    assert missing.value.key == "GPULEDGER_API_TLS_CERT_FILE" and "cannot be read" in str(missing.value)
    with pytest.raises(ConfigError, match="absolute"):
        ApiConfig.from_env({"GPULEDGER_API_TLS_CERT_FILE": "cert.pem", "GPULEDGER_API_TLS_KEY_FILE": str(key)})
