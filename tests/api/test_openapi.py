"""The OpenAPI 3.1 document is valid, complete for the route table, and the running app keeps to it under
schemathesis (no 5xx, responses conform, authentication never ignored)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from jsonschema import Draft202012Validator
from schemathesis.specs.openapi.checks import ignored_auth, positive_data_acceptance
from schemathesis.specs.openapi.definitions import OPENAPI_31  # the official OAS 3.1 meta-schema
from sqlalchemy import text

from api import tokens
from api.app import _document, all_operations, create_app
from api.config import ApiConfig
from ledger.bootstrap import APP_ROLE
from ledger.config import LedgerConfig
from ledger.db import create_app_engine
from ledger.embedded import EmbeddedPostgres
from ledger.environ import Secret
from ledger.service import Ledger
from tests.api.conftest import serving, superuser_engine

DOCUMENT = _document()
schema = schemathesis.openapi.from_dict(DOCUMENT)


def test_document_is_valid_openapi_31() -> None:
    errors = list(Draft202012Validator(OPENAPI_31).iter_errors(DOCUMENT))
    assert errors == []
    assert DOCUMENT["openapi"] == "3.1.0"


def test_document_covers_every_operation() -> None:
    documented = {(m.upper(), p) for p, ops in DOCUMENT["paths"].items() for m in ops}
    assert documented == {(op.method, op.path) for op in all_operations()}
    for op in all_operations():
        doc = DOCUMENT["paths"][op.path][op.method.lower()]
        assert (doc["security"] == []) == op.public
        assert ("requestBody" in doc) == (op.body is not None)
        for body_schema in [op.body] if op.body else []:
            Draft202012Validator.check_schema(body_schema)
            assert body_schema.get("additionalProperties") is False


@pytest.fixture(scope="module")
def live(pg_cluster: EmbeddedPostgres, api_template: str) -> Iterator[tuple[str, str]]:
    """One database and server for the whole fuzz run; yields (base URL, admin token)."""
    name = f"af_{uuid.uuid4().hex[:12]}"
    admin = superuser_engine(pg_cluster)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{api_template}" OWNER gpuledger_owner'))
    url = pg_cluster.url(user=APP_ROLE, database=name)
    engine = create_app_engine(url)
    ledger = Ledger(engine, LedgerConfig(database_url=Secret(url)))
    ledger.add_user("alice", actor="test")
    with engine.begin() as conn:
        token = tokens.issue(conn, name="fuzz", role="admin", billing_user=None, expires_at=None,
                             created_by="test").token
    try:
        with serving(create_app(ledger, ApiConfig(auth_failures=100_000))) as base:
            yield base, token
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
def test_api_keeps_to_its_schema(case: schemathesis.Case, live: tuple[str, str]) -> None:
    base, token = live
    # Cross-field rules (a reversed period, a zero amount, role 'user' without a user) are not expressible
    # in the schema, so schema-valid data may rightly get 422: that one check is left out.
    case.call_and_validate(base_url=base, headers={"Authorization": f"Bearer {token}"},
                           additional_checks=[ignored_auth], excluded_checks=[positive_data_acceptance])
