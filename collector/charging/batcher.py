"""Charging samples in batches as they arrive, so a thousand nodes cost tens of transactions, not a thousand."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from collector.charging.posting import Charged, Fetched
from ledger.errors import LedgerUnavailable

# At most this many samples in one transaction.
CHARGE_BATCH = 64


class ChargeBatcher:
    """Samples are charged as they arrive, in batches: whatever queued while the last transaction ran goes
    into the next one, so a thousand nodes cost tens of transactions instead of a thousand (the ledger's
    single writer lock serialises them anyway). Each sample still commits with its records and entries."""

    def __init__(self, run: Callable[[list[Fetched]], Awaitable[list[Charged]]], size: int = CHARGE_BATCH) -> None:
        self._run = run
        self._size = size
        self._queue: asyncio.Queue[tuple[Fetched, asyncio.Future[Charged]]] = asyncio.Queue()
        self._worker = asyncio.create_task(self._work())

    async def charge(self, fetched: Fetched) -> Charged:
        future: asyncio.Future[Charged] = asyncio.get_running_loop().create_future()
        await self._queue.put((fetched, future))
        return await future

    async def _work(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                results = await self._run([fetched for fetched, _ in batch])
            except LedgerUnavailable as exc:  # every waiting node learns why; the next tick catches up
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            except Exception as exc:
                if len(batch) == 1:
                    if not batch[0][1].done():
                        batch[0][1].set_exception(exc)
                    continue
                # One sample the database refuses must not hold the others back: charge them one by one.
                for item in batch:
                    await self._queue.put(item)
                self._size = 1
                continue
            for (_, future), charged in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(charged)

    async def aclose(self) -> None:
        self._worker.cancel()
        await asyncio.gather(self._worker, return_exceptions=True)
