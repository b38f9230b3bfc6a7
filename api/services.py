"""What handlers share: the ledger, the engine (the API's own tables), limits, metrics, the token cache, and
the threads handlers run in."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from anyio import CapacityLimiter
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from api.config import ApiConfig
from api.errors import unprocessable
from api.metrics import ApiMetrics
from api.operation import Call
from api.ratelimit import FailedAuthLimiter
from api.tokencache import TokenCache
from ledger.db import reading, translated
from ledger.service import Ledger


@dataclass(frozen=True)
class Services:
    ledger: Ledger
    config: ApiConfig
    metrics: ApiMetrics
    limiter: FailedAuthLimiter
    tokens: TokenCache
    threads: CapacityLimiter
    # SSH-proven login starts per client address (the same machinery as failed authentications, counting starts)
    login_starts: FailedAuthLimiter

    @property
    def engine(self) -> Engine:
        return self.ledger.engine

    @contextmanager
    def write(self) -> Iterator[Connection]:
        with translated(), self.engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A consistent read for one request, planned without parallel workers: a request's queries are small
        reads of aggregates and registries, where starting workers took most of the time (the overview's top
        users over the rollup: 13 ms with two workers, 3 ms without; bench/README.md)."""
        with reading(self.engine) as conn:
            conn.execute(text("SET LOCAL max_parallel_workers_per_gather = 0"))
            yield conn


def services(call: Call) -> Services:
    svc = call.services
    assert isinstance(svc, Services)
    return svc


def period(call: Call, max_days: int, required: bool = True) -> tuple[date | None, date | None]:
    """The ``from``/``to`` local dates of a call (``to`` exclusive), refused when reversed or too long."""
    start, end = call.params.get("from"), call.params.get("to")
    if start is None or end is None:
        if required or (start is None) != (end is None):
            raise unprocessable("invalid_range", "give both 'from' and 'to'")
        return None, None
    if end <= start:
        raise unprocessable("invalid_range", "'to' must be after 'from' (it is exclusive)", start=str(start),
                            end=str(end))
    if end - start > timedelta(days=max_days):
        raise unprocessable("range_too_long", f"at most {max_days} days per request", max_days=max_days)
    return start, end


def aware(text: str, field: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise unprocessable("invalid_time", f"{field}: not an ISO 8601 time", field=field) from exc
    if value.tzinfo is None:
        raise unprocessable("invalid_time", f"{field}: give a time zone (e.g. Z or +08:00)", field=field)
    return value
