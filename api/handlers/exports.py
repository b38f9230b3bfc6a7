"""Exports streamed for a capped date range: the ledger writes into a bounded queue from a worker thread
and the response sends what it gets, so memory stays flat whatever the size of the period."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

from starlette.responses import StreamingResponse

from api.operation import Call
from api.services import period, services

MEDIA = {"csv": "text/csv; charset=utf-8", "hledger": "text/plain; charset=utf-8",
         "beancount": "text/plain; charset=utf-8"}
_CHUNK = 64 * 1024
_DONE = object()


class _QueueWriter:
    """A text sink that hands ~64 KiB chunks to the response; blocks when the client reads slowly."""

    def __init__(self, chunks: queue.Queue[object]) -> None:
        self._chunks = chunks
        self._buffer: list[str] = []
        self._size = 0

    def write(self, s: str) -> int:
        self._buffer.append(s)
        self._size += len(s)
        if self._size >= _CHUNK:
            self.flush()
        return len(s)

    def flush(self) -> None:
        if self._buffer:
            self._chunks.put("".join(self._buffer).encode())
            self._buffer, self._size = [], 0


def export(call: Call) -> Any:
    svc = services(call)
    fmt = call.params["format"]
    start, end = period(call, svc.config.max_export_days)
    chunks: queue.Queue[object] = queue.Queue(maxsize=16)

    def produce() -> None:
        writer = _QueueWriter(chunks)
        try:
            svc.ledger.export(fmt, writer, start, end)  # type: ignore[arg-type]
            writer.flush()
        finally:
            # A failure mid-stream can only cut the body short (the status is sent): the client sees a
            # truncated file, which the closing balance assertions of every format make evident.
            chunks.put(_DONE)

    def stream() -> Iterator[bytes]:
        threading.Thread(target=produce, name="gpuledger-export", daemon=True).start()
        while (chunk := chunks.get()) is not _DONE:
            assert isinstance(chunk, bytes)
            yield chunk

    filename = f"gpuledger-{start}-{end}.{ 'csv' if fmt == 'csv' else 'journal' if fmt == 'hledger' else 'beancount'}"
    return StreamingResponse(stream(), media_type=MEDIA[fmt],
                             headers={"Content-Disposition": f'attachment; filename="{filename}"'})
