"""Exports streamed for a capped date range: the ledger writes from a handler thread into a small bounded
channel and the response sends what it gets, so memory stays flat whatever the size of the period.

The export holds a REPEATABLE READ transaction (and a pooled connection) from start to end, so it runs like
any handler, under the ``db_threads`` limiter, and it ends with its client: a disconnect closes the channel,
the writer's next chunk raises, the transaction rolls back. A client that stops reading without going away is
cut after ``idle_in_transaction_seconds`` without taking a chunk (PostgreSQL would end that idle transaction
at the same moment anyway).

The FOCUS report comes as CSV, or as Parquet with ``?as=parquet`` (a query parameter, not ``Accept``: the
path's ``{format}`` already names the report, and the handler sees the validated parameters, not the
headers); a server without pyarrow answers that 406 before it starts the stream."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio
from anyio import CapacityLimiter, from_thread, to_thread
from anyio.streams.memory import MemoryObjectSendStream
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from api.errors import ApiError, unprocessable
from api.operation import Call
from api.services import period, services
from ledger.exports import focus_parquet
from ledger.exports.focus_file import FocusExporter

log = logging.getLogger("gpuledger.api")
MEDIA = {"csv": "text/csv; charset=utf-8", "hledger": "text/plain; charset=utf-8",
         "beancount": "text/plain; charset=utf-8", "focus": "text/csv; charset=utf-8"}
SUFFIX = {"csv": "csv", "hledger": "journal", "beancount": "beancount", "focus": "focus.csv"}
# What ``?as=`` may ask of a report, and which report offers it.
FILE_TYPES = ("csv", "parquet")
PARQUET_SUFFIX = "focus.parquet"
_CHUNK = 64 * 1024
_QUEUED = 16


class _ClientGone(Exception):
    """Raised in the export thread when the response stopped taking chunks; it aborts the export."""


class _ChannelWriter:
    """A sink of text (the ledger exports) or bytes (Parquet) that hands ~64 KiB chunks to the response; blocks
    while the client reads slowly."""

    # pyarrow writes to any object with ``write`` that says it is open
    closed = False

    def __init__(self, chunks: MemoryObjectSendStream[bytes]) -> None:
        self._chunks = chunks
        self._buffer: list[bytes] = []
        self._size = 0

    def write(self, s: str | bytes) -> int:
        data = s.encode() if isinstance(s, str) else bytes(s)
        self._buffer.append(data)
        self._size += len(data)
        if self._size >= _CHUNK:
            self.flush()
        return len(s)

    def flush(self) -> None:
        if self._buffer:
            data = b"".join(self._buffer)
            self._buffer, self._size = [], 0
            try:
                from_thread.run(self._chunks.send, data)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
                raise _ClientGone from exc


class ExportResponse(Response):
    """Runs ``produce(writer)`` in a handler thread while the chunks it writes go to the client."""

    def __init__(self, produce: Callable[[_ChannelWriter], object], threads: CapacityLimiter, stall_seconds: int,
                 media_type: str, headers: dict[str, str]) -> None:
        self._produce = produce
        self._threads = threads
        self._stall = stall_seconds or None
        self.status_code = 200
        self.media_type = media_type
        self.background = None
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sender, chunks = anyio.create_memory_object_stream[bytes](_QUEUED)
        completed = False

        async def produce() -> None:
            nonlocal completed
            with sender:
                try:
                    await to_thread.run_sync(self._produce, _ChannelWriter(sender), limiter=self._threads)
                    completed = True
                except _ClientGone:
                    pass
                except Exception:
                    # The status is sent: the body is cut short without its last chunk, so the client sees
                    # an incomplete transfer rather than a shorter file.
                    log.exception("export failed mid-stream")

        async def until_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            tg.cancel_scope.cancel()

        async with anyio.create_task_group() as tg:
            tg.start_soon(produce)
            tg.start_soon(until_disconnect)
            with chunks:
                await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
                async for chunk in chunks:
                    with anyio.move_on_after(self._stall) as wait:
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    if wait.cancelled_caught:
                        log.warning("export cut: the client took no data for %s s", self._stall)
                        break
            # Leaving ``with chunks`` made the writer's next send raise; wait for the thread to roll back.
            tg.cancel_scope.cancel()
        if completed:
            await send({"type": "http.response.body", "body": b"", "more_body": False})


def export(call: Call) -> Any:
    svc = services(call)
    fmt = call.params["format"]
    start, end = period(call, svc.config.max_export_days)
    parquet = call.params.get("as", "csv") == "parquet"
    if parquet and fmt != FocusExporter.name:
        raise unprocessable("invalid_file_type", "as=parquet is for the focus report only", format=fmt)
    if parquet:
        try:
            focus_parquet.require_pyarrow()
        except focus_parquet.ParquetUnavailable as exc:
            raise ApiError(406, exc.code, exc.message, {"missing": "pyarrow"}) from exc

    def produce(writer: _ChannelWriter) -> object:
        if parquet:
            ledger = svc.ledger
            result: object = focus_parquet.export(ledger.engine, ledger.config.currency, ledger.config.timezone,
                                                  writer, start, end)  # type: ignore[arg-type]
        else:
            result = svc.ledger.export(fmt, writer, start, end)  # type: ignore[arg-type]
        writer.flush()
        return result

    filename = f"gpuledger-{start}-{end}.{PARQUET_SUFFIX if parquet else SUFFIX[fmt]}"
    return ExportResponse(produce, svc.threads, svc.config.idle_in_transaction_seconds,
                          focus_parquet.MEDIA_TYPE if parquet else MEDIA[fmt],
                          {"Content-Disposition": f'attachment; filename="{filename}"'})
