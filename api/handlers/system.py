"""Health (database reachable, age of the controller's last tick, from the view it publishes,
``collector.tick_status``) and Prometheus metrics."""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.responses import JSONResponse, Response

from api.operation import Call
from api.services import services
from ledger.errors import LedgerUnavailable

log = logging.getLogger("gpuledger.api")


def healthz(call: Call) -> Any:
    try:
        with services(call).read() as conn:
            # The controller's schema may not be installed (API alone): then there is no tick to age.
            has_ticks = conn.execute(text("SELECT to_regclass('collector.tick_status') IS NOT NULL")).scalar()
            age = conn.execute(text("SELECT extract(epoch FROM now() - last_started_at) FROM collector.tick_status")
                               ).scalar() if has_ticks else None
    except LedgerUnavailable as exc:
        # The driver's message names the database host and port: the log gets it, the (public) body does not.
        log.warning("healthz: %s (request id %s)", exc.message, call.request_id)
        return JSONResponse({"status": "unavailable", "database": "unavailable", "last_tick_age_seconds": None},
                            status_code=503, headers={"Retry-After": "5"})
    return {"status": "ok", "database": "ok", "last_tick_age_seconds": None if age is None else float(age)}


def metrics(call: Call) -> Any:
    return Response(generate_latest(services(call).metrics.registry), media_type=CONTENT_TYPE_LATEST)
