"""Console fixtures: the API's (a fresh database per test, the app on loopback, one token per role) and a
logged-in HTTP client per role, made by the console's own login form."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from ledger.records import UsageRecord, UsageTick
from ledger.service import Ledger
from tests.api.conftest import Tokens, api_db, api_template, base_url, client, issued, ledger  # noqa: F401
from tests.console.browser import ARGS, CHROMIUM

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, html[:500]
    return found.group(1)


@contextmanager
def log_in(base: str, token: str) -> Iterator[httpx.Client]:
    """A client logged in through GET and POST /login, as a browser would be."""
    with httpx.Client(base_url=base, timeout=30) as c:
        yield _logged_in(c, token)


def _logged_in(c: httpx.Client, token: str) -> httpx.Client:
    form = c.get("/login")
    assert form.status_code == 200, form.text[:300]
    done = c.post("/login", data={"csrf": csrf_of(form.text), "token": token, "next": "/"})
    assert done.status_code == 303, done.text[:300]
    assert "gl_session" in c.cookies
    return c


@pytest.fixture
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: $GPULEDGER_ARTIFACTS, else a folder of pytest's base temp."""
    given = os.environ.get("GPULEDGER_ARTIFACTS")
    folder = Path(given) / "console" if given else tmp_path_factory.getbasetemp() / "console-screens"
    folder.mkdir(parents=True, exist_ok=True)
    return folder



@pytest.fixture
def browser() -> Iterator[Any]:
    with _playwright().sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield b
        finally:
            b.close()



T_END = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)


@pytest.fixture
def seeded(ledger: Ledger, issued: Tokens) -> Ledger:  # noqa: F811 (the fixtures imported above)
    """alice (in project lab) used A100s, an H100 and CPU over the last ten days at prices with odd fractions;
    lab and alice were recharged."""
    start = T_END - timedelta(days=10)
    for model, amount in (("A100", "0.613"), ("H100", "1.170001")):
        ledger.add_price("gpu", Decimal(amount), Decimal(3600), model_pattern=model, actor="test",
                         valid_from=start - timedelta(days=1))
    ledger.add_price("cpu", Decimal("0.0371"), Decimal(3600), actor="test", valid_from=start - timedelta(days=1))
    ledger.add_project("lab", actor="test")
    ledger.assign_project("alice", "lab", actor="test")
    ledger.recharge("project:lab", 2_000_000_000, idem_key="seed-lab", actor="test", memo="seed")
    ledger.recharge("user:alice", 12_345_678, idem_key="seed-alice", actor="test", memo="seed")
    records = []
    t = start
    i = 0
    while t < T_END:
        end = t + timedelta(hours=5)
        for resource, model, qty, unit in (("gpu", "A100", 7 * 3600 + i, "gpu-second"),
                                           ("gpu", "H100", 1800 + 3 * i, "gpu-second"),
                                           ("cpu", "", 9000 + i, "core-second")):
            if model == "H100" and i % 3:
                continue
            records.append(UsageRecord(f"n1/{i}/{resource}/{model}", "alice", resource, Decimal(qty), unit, t, end,
                                       "test", f"n1/e/{resource}/{model}", model, {}))
        t, i = end, i + 1
    result = ledger.post_usage(UsageTick("n1", tuple(records)))
    assert (result.rejected, result.skipped, len(result.posted)) == ((), (), len(records))
    return ledger


def _playwright() -> Any:
    return pytest.importorskip("playwright.sync_api")
