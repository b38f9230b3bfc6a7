"""``GET /v1/exports/focus?as=parquet``: the FOCUS report as Parquet over HTTP, the same rows as the CSV one."""

from __future__ import annotations

import csv
import io
import sys

import httpx
import pytest

from ledger.exports import focus_parquet
from ledger.records import UsageTick
from ledger.service import Ledger
from tests.api.conftest import Tokens, bearer
from tests.ledger.helpers import gpu, priced

PERIOD = {"from": "2026-02-28", "to": "2026-04-01"}


def _pyarrow_missing() -> bool:
    try:
        focus_parquet.require_pyarrow()
    except focus_parquet.ParquetUnavailable:
        return True
    return False


@pytest.mark.skipif(_pyarrow_missing(), reason="pyarrow (gpuledger[parquet]) does not import in this venv")
def test_the_focus_report_comes_as_parquet_when_asked(client: httpx.Client, issued: Tokens, ledger: Ledger) -> None:
    import pyarrow.parquet as pq

    priced(ledger)
    ledger.recharge("alice", 5_000_000, idem_key="r", actor="test")
    ledger.post_usage(UsageTick("n1", (gpu("alice/g", minute=600), gpu("alice/g2", minute=601))))
    r = client.get("/v1/exports/focus", headers=bearer(issued.auditor), params=PERIOD | {"as": "parquet"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == focus_parquet.MEDIA_TYPE
    assert r.headers["content-disposition"].endswith('.focus.parquet"')
    table = pq.read_table(io.BytesIO(r.content))
    as_csv = client.get("/v1/exports/focus", headers=bearer(issued.auditor), params=PERIOD)
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert len(rows) == table.num_rows == 2
    assert [format(cost, "f") for cost in table.column("BilledCost").to_pylist()] == [r["BilledCost"] for r in rows]


def test_parquet_is_for_the_focus_report_only(client: httpx.Client, issued: Tokens) -> None:
    r = client.get("/v1/exports/csv", headers=bearer(issued.auditor), params=PERIOD | {"as": "parquet"})
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_file_type")
    r = client.get("/v1/exports/focus", headers=bearer(issued.auditor), params=PERIOD | {"as": "xlsx"})
    assert r.status_code == 422


def test_a_server_without_pyarrow_answers_406_before_streaming(client: httpx.Client, issued: Tokens,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # the server runs in this process (tests.api.conftest)
    r = client.get("/v1/exports/focus", headers=bearer(issued.auditor), params=PERIOD | {"as": "parquet"})
    assert (r.status_code, r.json()["error"]["code"]) == (406, "parquet_unavailable")
    assert "pip install 'gpuledger[parquet]'" in r.json()["error"]["message"]
