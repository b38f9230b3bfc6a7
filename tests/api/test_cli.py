"""``gpuledger api token create|list|revoke`` against a database with every chain migrated."""

from __future__ import annotations

import csv
import io
import json

import pytest

from gpuledger.cli import main
from tests.api.conftest import ApiDatabase


def test_token_list_in_every_format(api_db: ApiDatabase, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GPULEDGER_DATABASE_URL", api_db.app_url)
    assert main(["api", "token", "create", "--role", "auditor", "--name", "books"]) == 0
    secret = capsys.readouterr().out.strip()
    assert main(["api", "token", "list", "--format", "json"]) == 0
    (token,) = json.loads(capsys.readouterr().out)
    assert token["role"] == "auditor" and token["name"] == "books" and token["state"] == "active"
    assert token["user"] is None and token["expires"] is None and secret not in json.dumps(token)
    assert main(["api", "token", "revoke", str(token["id"])]) == 0
    assert main(["api", "token", "list", "--format", "csv"]) == 0
    header, row = csv.reader(io.StringIO(capsys.readouterr().out))
    assert header == ["id", "prefix", "role", "user", "name", "state", "expires"]
    assert row[0] == str(token["id"]) and row[5] == "revoked"
    assert main(["api", "token", "list", "--no-header"]) == 0
    assert capsys.readouterr().out.split()[0] == str(token["id"])
