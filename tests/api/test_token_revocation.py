"""A revocation is final: the app role (the API's own login) cannot take it back or move it (issue #12)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from api import tokens
from ledger.service import Ledger


@pytest.mark.parametrize("change", ["NULL", "revoked_at + interval '1 day'", "'2000-01-01T00:00:00Z'"])
def test_a_revoked_token_stays_revoked_as_it_was(ledger: Ledger, change: str) -> None:
    with ledger.engine.begin() as conn:
        issued = tokens.issue(conn, name="t", role="admin", billing_user=None, expires_at=None, created_by="test")
        revoked = tokens.revoke(conn, issued.info.id)
    assert revoked is not None and revoked.revoked_at is not None
    with pytest.raises(DBAPIError, match="revoked_at is write-once"), ledger.engine.begin() as conn:
        conn.execute(text(f"UPDATE api.token SET revoked_at = {change} WHERE id = :i"), {"i": issued.info.id})  # noqa: S608
    with ledger.engine.begin() as conn:
        assert tokens.get(conn, issued.info.id) == revoked
        assert tokens.revoke(conn, issued.info.id) == revoked  # revoking again is still a no-op
