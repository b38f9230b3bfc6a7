"""Handlers run in at most ``db_threads`` threads: a burst of requests waits on the event loop instead of
piling into threads that each hold (or open) a database connection."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
from sqlalchemy import event

from api.app import create_app
from api.config import ApiConfig
from ledger.service import Ledger
from tests.api.conftest import Tokens, bearer, serving


def test_a_burst_uses_at_most_db_threads_connections(ledger: Ledger, issued: Tokens) -> None:
    in_use, most = 0, 0

    def checkout(*_: object) -> None:
        nonlocal in_use, most
        in_use += 1
        most = max(most, in_use)

    def checkin(*_: object) -> None:
        nonlocal in_use
        in_use -= 1

    event.listen(ledger.engine, "checkout", checkout)
    event.listen(ledger.engine, "checkin", checkin)
    with serving(create_app(ledger, ApiConfig(db_threads=2, auth_failures=100_000))) as url, \
            httpx.Client(base_url=url, timeout=30, limits=httpx.Limits(max_connections=40)) as client, \
            ThreadPoolExecutor(40) as pool:
        answers = list(pool.map(lambda _: client.get("/v1/wallets/alice/balance", headers=bearer(issued.alice)),
                                range(200)))
    assert {r.status_code for r in answers} == {200}
    assert most <= 2   # without the bound: 10, the engine's pool and all its overflow


def test_db_threads_comes_from_the_environment() -> None:
    assert ApiConfig.from_env({"GPULEDGER_API_DB_THREADS": "3"}).db_threads == 3
    assert ApiConfig().db_threads == 5
