"""Money-moving routes: a replay with the same Idempotency-Key moves money once and answers the original
result; the same key with other content is refused (409) and moves nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from ledger.records import UsageRecord, UsageTick
from ledger.service import Ledger
from tests.api.conftest import Tokens, bearer

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _post(client: httpx.Client, token: str, path: str, key: str | None, body: dict[str, object]) -> httpx.Response:
    headers = bearer(token) | ({"Idempotency-Key": key} if key else {})
    return client.post(path, headers=headers, json=body)


def _available(client: httpx.Client, token: str, wallet: str = "alice") -> str:
    return str(client.get(f"/v1/wallets/{wallet}/balance", headers=bearer(token)).json()["available"])


def _usage_entry(ledger: Ledger) -> int:
    ledger.add_price("gpu", Decimal("0.60"), Decimal(60), model_pattern="A100", actor="test",
                     valid_from=T0 - timedelta(days=1))
    record = UsageRecord("n1/b/1/alice/gpu/0", "alice", "gpu", Decimal(600), "gpu-second", T0,
                         T0 + timedelta(minutes=10), "test", "n1/b/alice/gpu/0", "A100", {"sample": "s1"})
    entry_id = ledger.post_usage(UsageTick("n1", (record,))).posted[0].entry_id
    assert entry_id is not None
    return entry_id


@pytest.mark.parametrize(("path", "body", "other"), [
    ("/v1/wallets/alice/recharge", {"amount": "10.5", "memo": "m"}, {"amount": "10.6"}),
    ("/v1/wallets/user:alice/grant", {"amount": "3", "expires_at": "2030-01-01T00:00:00Z"}, {"amount": "4"}),
    ("/v1/wallets/alice/adjust", {"amount": "-2.25", "reason": "fix"}, {"amount": "-2.26", "reason": "fix"}),
])
def test_wallet_operations_move_money_once(client: httpx.Client, issued: Tokens, path: str,
                                           body: dict[str, object], other: dict[str, object]) -> None:
    first = _post(client, issued.admin, path, "op-1", body)
    assert first.status_code == 201, first.text
    after_first = _available(client, issued.admin)
    replay = _post(client, issued.admin, path, "op-1", body)
    assert (replay.status_code, replay.json()) == (201, first.json())
    assert _available(client, issued.admin) == after_first
    conflict = _post(client, issued.admin, path, "op-1", other)
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "idempotency_conflict"
    assert _available(client, issued.admin) == after_first


def test_refund_and_reverse_once(client: httpx.Client, issued: Tokens, ledger: Ledger) -> None:
    entry_id = _usage_entry(ledger)
    assert _available(client, issued.admin) == "-6.000000"
    for _ in range(2):
        r = _post(client, issued.admin, f"/v1/entries/{entry_id}/refund", "refund-1", {"amount": "1", "reason": "x"})
        assert r.status_code == 201, r.text
    assert _available(client, issued.admin) == "-5.000000"
    too_much = _post(client, issued.admin, f"/v1/entries/{entry_id}/refund", "refund-2", {"amount": "9", "reason": "x"})
    assert too_much.status_code == 409 and too_much.json()["error"]["code"] == "refund_exceeds_charge"
    # A person reads the amounts in the currency; a program gets the exact micro-units in the details.
    error = too_much.json()["error"]
    assert error["message"] == f"entry {entry_id}: refund of 9.000000 CNY exceeds the 5.000000 CNY still refundable"
    assert (error["details"]["asked"], error["details"]["refundable"]) == (9_000_000, 5_000_000)
    recharge = _post(client, issued.admin, "/v1/wallets/alice/recharge", "r-1", {"amount": "20"}).json()["entry"]["id"]
    for _ in range(2):
        r = _post(client, issued.admin, f"/v1/entries/{recharge}/reverse", "rev-1", {"reason": "mistake"})
        assert r.status_code == 201, r.text
    assert _available(client, issued.admin) == "-5.000000"
    again = _post(client, issued.admin, f"/v1/entries/{recharge}/reverse", "rev-2", {"reason": "mistake"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_reversed"


def test_money_needs_a_key_and_valid_amounts(client: httpx.Client, issued: Tokens) -> None:
    path = "/v1/wallets/alice/recharge"
    missing = _post(client, issued.admin, path, None, {"amount": "1"})
    assert missing.json()["error"]["code"] == "idempotency_key_required"
    for amount in ("1.1234567", "1e3", "NaN", "-1", "0x10", ""):
        r = _post(client, issued.admin, path, f"k-{amount}", {"amount": amount})
        assert r.status_code == 422, (amount, r.text)
    assert _post(client, issued.admin, path, "zero", {"amount": "0"}).status_code == 422
    assert _post(client, issued.admin, "/v1/wallets/nobody/recharge", "k", {"amount": "1"}).status_code == 404
    assert _available(client, issued.admin) == "0.000000"


def test_mutations_are_audited_with_the_request_id(client: httpx.Client, issued: Tokens, ledger: Ledger) -> None:
    from sqlalchemy import text
    r = _post(client, issued.admin, "/v1/wallets/alice/recharge", "audit-1", {"amount": "5"})
    request_id = r.headers["X-Request-Id"]
    with ledger.engine.connect() as conn:
        rows = conn.execute(text("SELECT actor, action, target FROM ledger.admin_audit WHERE request_id = :r"),
                            {"r": request_id}).all()
    assert [tuple(row) for row in rows] == [("api:admin-x", "recharge", "liabilities:wallet:user:alice")]
