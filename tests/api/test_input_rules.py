"""Input rules the API keeps to and documents (issue #12): an empty time is no time (item 9), text carries
no control or format characters (15), an error shows a clipped value, never the whole of it (6), and the
OpenAPI document says what the server does (17)."""

from __future__ import annotations

import re

import httpx
import pytest
from jsonschema import Draft202012Validator

from api.app import _document
from api.routes import OPERATIONS
from ledger.accounts import NAME_RULE
from ledger.service import Ledger
from tests.api.conftest import Tokens, bearer

DOCUMENT = _document()


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/v1/tokens", {"name": "ci", "role": "auditor", "expires_at": ""}, "expires_at"),
    ("/v1/enforcement/overrides", {"user": "alice", "action": "exempt", "reason": "r", "until": ""}, "until"),
    ("/v1/prices", {"resource": "cpu", "amount": "1", "per": "3600", "valid_from": ""}, "valid_from"),
])
def test_an_empty_time_is_refused_not_taken_as_none(client: httpx.Client, issued: Tokens, path: str,
                                                    body: dict[str, str], field: str) -> None:
    r = client.post(path, headers=bearer(issued.admin), json=body)
    assert (r.status_code, r.json()["error"]["code"], r.json()["error"]["details"]["field"]) == (
        422, "invalid_time", field), r.text
    # Nothing was written: no override or price at all, and among the fixture's tokens none named ci.
    listed = client.get(path, headers=bearer(issued.admin)).json()
    assert [item for item in listed if path != "/v1/tokens" or item["name"] == "ci"] == []


@pytest.mark.parametrize("character", ["\u0085", "\u009b", "\u202e", "\u200b", "\ufeff", "\x7f"])
def test_control_and_format_characters_are_refused(client: httpx.Client, issued: Tokens, ledger: Ledger,
                                                   character: str) -> None:
    admin = bearer(issued.admin)
    refused = [
        client.post("/v1/users", headers=admin, json={"name": "carol", "display_name": f"Carol{character}"}),
        client.post("/v1/wallets/alice/recharge", headers=admin | {"Idempotency-Key": f"t-{ord(character)}"},
                    json={"amount": "1", "memo": f"cash{character}gnp.exe"}),
        client.post("/v1/enforcement/overrides", headers=bearer(issued.operator),
                    json={"user": "alice", "action": "exempt", "reason": f"ok{character}"}),
        client.get("/v1/usage", headers=admin, params={"model": f"A100{character}"}),
    ]
    for r in refused:
        assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_characters"), r.text
        assert r.json()["error"]["details"]["character"] == f"U+{ord(character):04X}"
    assert [u.name for u in ledger.list_users()] == ["alice", "bob"]
    assert ledger.balance("alice").available == 0


def test_other_scripts_and_spaces_are_text(client: httpx.Client, issued: Tokens) -> None:
    r = client.post("/v1/users", headers=bearer(issued.admin),
                    json={"name": "wang", "display_name": "王\u3000小明 (Zoë, \u00a0مرحبا)"})
    assert r.status_code == 201, r.text


def test_an_error_shows_a_clipped_value(client: httpx.Client, issued: Tokens) -> None:
    huge = "A" * 900_000  # under the 1 MiB body limit (over it: 413, tests/api/test_hardening.py)
    r = client.post("/v1/prices/preview", headers=bearer(issued.admin),
                    params={"from": "2026-01-01", "to": "2026-02-01"},
                    json={"resource": "gpu", "amount": "1", "per": "60", "model_pattern": huge})
    assert r.status_code == 422
    assert len(r.content) < 2000
    message = r.json()["error"]["message"]
    assert message.startswith("model_pattern: 'AAAA") and message.endswith("' is too long"), message
    assert "characters left out" in message
    unknown = client.post("/v1/users", headers=bearer(issued.admin), json={"name": "x", "B" * 100_000: 1})
    assert unknown.status_code == 422 and len(unknown.content) < 2000


def _param(path: str, method: str, name: str) -> dict[str, object]:
    return next(p for p in DOCUMENT["paths"][path][method]["parameters"] if p["name"] == name)


def test_the_document_says_how_a_period_is_checked(client: httpx.Client, issued: Tokens) -> None:
    assert "'to' with it" in str(_param("/v1/usage", "get", "from")["description"])
    assert "after 'from'" in str(_param("/v1/usage", "get", "to")["description"])
    assert "after 'from'" in str(_param("/v1/reports/revenue", "get", "to")["description"])
    for query in ({"from": "2026-01-01"}, {"from": "2026-01-01", "to": "2026-01-01"}):
        r = client.get("/v1/usage", headers=bearer(issued.admin), params=query)
        assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_range")


def test_a_channel_the_schema_allows_is_one_the_ledger_takes(client: httpx.Client, issued: Tokens) -> None:
    recharge = next(op for op in OPERATIONS if op.operation_id == "recharge")
    assert recharge.body is not None
    channel = Draft202012Validator(recharge.body["properties"]["channel"])
    for name in ("bank", "0bank", "_x", "wechat.pay", "-a", "A", "a" * 64, "a" * 65):
        assert channel.is_valid(name) == (re.fullmatch(NAME_RULE, name) is not None), name
    r = client.post("/v1/wallets/alice/recharge", headers=bearer(issued.admin) | {"Idempotency-Key": "ch-1"},
                    json={"amount": "1", "channel": "0bank"})
    assert (r.status_code, r.json()["error"]["code"]) == (422, "validation_error")


def test_an_export_declares_the_media_type_it_serves(client: httpx.Client, issued: Tokens) -> None:
    declared = DOCUMENT["paths"]["/v1/exports/{format}"]["get"]["responses"]["200"]["content"]
    for fmt in ("csv", "hledger", "beancount", "focus"):
        r = client.get(f"/v1/exports/{fmt}", headers=bearer(issued.auditor),
                       params={"from": "2026-01-01", "to": "2026-02-01"})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].split(";")[0] in declared, (fmt, r.headers["content-type"])
        if fmt == "focus":   # a FOCUS cost report: its header row, and a file name that says what it is
            assert r.text.splitlines()[0].startswith("AvailabilityZone,BilledCost,"), r.text[:200]
            assert r.headers["content-disposition"].endswith('.focus.csv"')
