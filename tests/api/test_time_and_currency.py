"""One time rule for every timestamp the API prints (UTC, RFC 3339), whatever zone the database session
runs in or the ledger's local days are in; the currency beside the amounts of a balance and a statement."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from api import tokens
from api.app import create_app
from api.config import ApiConfig
from ledger.config import LedgerConfig
from ledger.db import create_app_engine
from ledger.environ import Secret
from ledger.service import Ledger
from tests.api.conftest import ApiDatabase, bearer, serving

ZONE = ZoneInfo("America/Los_Angeles")


@pytest.fixture
def far_client(api_db: ApiDatabase) -> Iterator[tuple[httpx.Client, str]]:
    """The API over a database session in Los Angeles, a ledger whose local days are Los Angeles days and
    whose currency is USD; yields a client and an admin token."""
    engine = create_app_engine(api_db.app_url, {"TimeZone": "America/Los_Angeles"})
    ledger = Ledger(engine, LedgerConfig(database_url=Secret(api_db.app_url), currency="USD", timezone=ZONE))
    ledger.add_user("alice", actor="test")
    with engine.begin() as conn:
        token = tokens.issue(conn, name="tz", role="admin", billing_user=None, expires_at=None,
                             created_by="test").token
    try:
        with serving(create_app(ledger, ApiConfig())) as base, httpx.Client(base_url=base, timeout=30) as client:
            yield client, token
    finally:
        engine.dispose()


def _utc(text: str) -> datetime:
    assert text.endswith("+00:00"), text
    return datetime.fromisoformat(text)


def test_timestamps_are_utc_and_amounts_name_their_currency(far_client: tuple[httpx.Client, str]) -> None:
    client, token = far_client
    posted = client.post("/v1/wallets/alice/recharge", headers={**bearer(token), "Idempotency-Key": "tz-1"},
                         json={"amount": "12.5"})
    assert posted.status_code == 201, posted.text
    entry = posted.json()["entry"]
    recorded = _utc(entry["recorded_at"])
    assert abs((recorded - datetime.now(UTC)).total_seconds()) < 60
    _utc(entry["effective_at"])

    balance = client.get("/v1/wallets/alice/balance", headers=bearer(token)).json()
    assert (balance["currency"], balance["available"]) == ("USD", "12.500000")

    today = datetime.now(ZONE).date()
    statement = client.get("/v1/wallets/alice/statement", headers=bearer(token),
                           params={"from": today.isoformat(), "to": (today + timedelta(days=1)).isoformat()}).json()
    assert statement["currency"] == "USD"
    # The period's bounds are Los Angeles midnights, printed in UTC (07:00 or 08:00 there).
    start = _utc(statement["start"])
    assert start == datetime(today.year, today.month, today.day, tzinfo=ZONE).astimezone(UTC)
    assert [_utc(line["effective_at"]) for line in statement["lines"]] == [_utc(entry["effective_at"])]

    user = client.get("/v1/users/alice", headers=bearer(token)).json()
    _utc(user["created_at"])
    for t in client.get("/v1/tokens", headers=bearer(token)).json():
        _utc(t["created_at"])
