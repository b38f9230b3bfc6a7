"""Settings the API stores are settings the controller applies, with the same values (issue #12, item 8):
one parser (control.settings) on both sides, checked over generated PUT bodies against the controller's own
reader; a version stored before that rule is shown as not in force and does not poison later ones."""

from __future__ import annotations

import json
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from collector.config import TierPolicy
from collector.enforcing.admin import AdminReader
from collector.enforcing.rules import Rules
from ledger.money import MICRO, parse_amount
from ledger.service import Ledger
from ledger.tiers import Thresholds
from tests.api.conftest import Tokens, bearer

# The controller's environment differs from the API's (100 / 10 / 0): a version must not depend on it.
CONTROLLER = Rules(Thresholds(warning=700 * MICRO, limited=300 * MICRO, blocked=-50 * MICRO),
                   TierPolicy(kill_grace_s=600), dry_run=False)


def _put_raw(client: httpx.Client, token: str, body: str) -> httpx.Response:
    return client.put("/v1/settings", headers=bearer(token) | {"Content-Type": "application/json"}, content=body)


def _controller(ledger: Ledger) -> Rules:
    with ledger.engine.connect() as conn:
        return AdminReader().read(conn, CONTROLLER).rules


def test_a_float_is_not_an_integer(client: httpx.Client, issued: Tokens, ledger: Ledger) -> None:
    for number in ("60.0", "1e3", "6E1", "true"):
        r = _put_raw(client, issued.admin, f'{{"kill_grace_seconds": {number}, "reason": "r"}}')
        assert r.status_code == 422, (number, r.text)
        assert r.json()["error"]["details"]["field"] == "kill_grace_seconds", r.text
    assert client.get("/v1/settings", headers=bearer(issued.admin)).json()["version"] is None
    assert _put_raw(client, issued.admin, '{"kill_grace_seconds": 60, "reason": "r"}').status_code == 200
    assert _controller(ledger).policy.kill_grace_s == 60


def test_a_stored_version_the_controller_refuses_is_not_in_force_and_not_inherited(
        client: httpx.Client, issued: Tokens, ledger: Ledger) -> None:
    admin = bearer(issued.admin)
    with ledger.engine.begin() as conn:   # what the API stored before it parsed as the controller does
        bad = conn.execute(text("INSERT INTO control.settings_version (settings, reason, actor) VALUES"
                                " (CAST(:s AS jsonb), 'old', 'admin') RETURNING id"),
                           {"s": json.dumps({"kill_grace_seconds": 60.0, "tier_warning": "500.000000",
                                             "tier_limited": "200.000000", "tier_blocked": "0.000000"})}).scalar_one()
    shown = client.get("/v1/settings", headers=admin).json()
    assert (shown["version"], shown["in_force"], shown["problem"]["key"]) == (bad, False, "kill_grace_seconds")
    assert client.get("/v1/settings/history", headers=admin).json()[0]["in_force"] is False
    assert _controller(ledger) == CONTROLLER                       # the controller agrees: nothing applies
    r = client.put("/v1/settings", headers=admin, json={"dry_run": True, "reason": "stop the kills"})
    assert r.status_code == 200, r.text
    assert r.json()["dropped"] == {"kill_grace_seconds": 60.0}
    assert r.json()["settings"] == {"dry_run": True, "tier_warning": "500.000000", "tier_limited": "200.000000",
                                    "tier_blocked": "0.000000"}
    assert client.get("/v1/settings", headers=admin).json()["in_force"] is True
    rules = _controller(ledger)
    assert (rules.dry_run, rules.policy.kill_grace_s, rules.thresholds.warning) == (True, 600, 500 * MICRO)
    with ledger.engine.connect() as conn:
        audited = conn.execute(text("SELECT after FROM api.audit WHERE action = 'settings.update'")).scalar_one()
    assert audited["dropped"] == {"kill_grace_seconds": 60.0}


_AMOUNTS = st.one_of(st.decimals(min_value=-1000, max_value=10**6, places=6, allow_nan=False).map(str),
                     st.sampled_from(["1e3", "1.0000001", "", " 5", "NaN"]), st.integers(-5, 5),
                     st.floats(allow_nan=False, allow_infinity=False))
_BODIES = st.fixed_dictionaries({}, optional={
    "tier_warning": _AMOUNTS, "tier_limited": _AMOUNTS, "tier_blocked": _AMOUNTS,
    "kill_grace_seconds": st.one_of(st.integers(-10, 40 * 86400), st.floats(0, 1e7), st.booleans(), st.just("60")),
    "dry_run": st.one_of(st.booleans(), st.just("yes"), st.integers(0, 1))})


@given(bodies=st.lists(_BODIES, min_size=1, max_size=4))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_every_stored_version_is_applied_by_the_controller_as_stored(
        client: httpx.Client, issued: Tokens, ledger: Ledger, bodies: list[dict[str, Any]]) -> None:
    for body in bodies:
        r = client.put("/v1/settings", headers=bearer(issued.admin), json={**body, "reason": "generated"})
        assert r.status_code in (200, 422), r.text
        if r.status_code == 422:
            continue
        stored = r.json()["settings"]
        rules = _controller(ledger)      # the controller's reader on the version just stored
        assert rules.settings_version == r.json()["version"]
        assert rules.policy.kill_grace_s == stored.get("kill_grace_seconds", CONTROLLER.policy.kill_grace_s)
        assert rules.dry_run == stored.get("dry_run", False)
        expected = (Thresholds(*(parse_amount(stored[k]) for k in ("tier_warning", "tier_limited", "tier_blocked")))
                    if "tier_warning" in stored else CONTROLLER.thresholds)
        assert rules.thresholds == expected
        for key, value in body.items():   # what was asked is what is stored (amounts in canonical text)
            if key.startswith("tier_"):
                assert parse_amount(stored[key]) == parse_amount(value)
            else:
                assert (type(stored[key]), stored[key]) == (type(value), value)
        shown = client.get("/v1/settings", headers=bearer(issued.operator)).json()
        assert (shown["settings"], shown["in_force"]) == (stored, True)

