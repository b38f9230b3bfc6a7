"""Failed-authentication limiter: a client address that failed ``limit`` times within ``window`` seconds is
refused (429) until its oldest failure leaves the window. In memory, per process: it slows guessing, and
guessing a 256-bit token is hopeless anyway."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class FailedAuthLimiter:
    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = limit
        self._window = window
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> int | None:
        """Seconds the client must wait, or None when it may try."""
        with self._lock:
            failures = self._prune(client)
            if len(failures) < self._limit:
                return None
            return max(1, int(failures[0] + self._window - self._clock() + 0.999))

    def failed(self, client: str) -> None:
        with self._lock:
            self._prune(client).append(self._clock())

    def _prune(self, client: str) -> deque[float]:
        failures = self._failures.setdefault(client, deque())
        horizon = self._clock() - self._window
        while failures and failures[0] <= horizon:
            failures.popleft()
        if not failures:
            del self._failures[client]
            return self._failures.setdefault(client, deque())
        return failures
