"""Failed-authentication limiter: a client address that failed ``limit`` times within ``window`` seconds is
refused (429) until its oldest failure leaves the window. In memory, per process: it slows guessing, and
guessing a 256-bit token is hopeless anyway, so a valid token is checked before the limit and always accepted
(an attacker sharing a NAT address with the admin must not lock the admin out).

Memory is bounded: an address keeps at most ``limit`` failure times (a newer failure pushes out the oldest,
which keeps a persistent guesser refused), the table keeps at most ``max_clients`` addresses (the one that
failed longest ago goes first), and addresses whose failures all left the window are forgotten."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable


class FailedAuthLimiter:
    def __init__(self, limit: int, window: float, max_clients: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = limit
        self._window = window
        self._max_clients = max_clients
        self._clock = clock
        # Ordered by each address's latest failure, oldest first: the front is what expires or is evicted first.
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._failures)

    def retry_after(self, client: str) -> int | None:
        """Seconds the client must wait, or None when it may try."""
        with self._lock:
            now = self._clock()
            self._forget_expired(now)
            failures = self._failures.get(client)
            if failures is None:
                return None
            while failures[0] <= now - self._window:
                failures.popleft()
            if len(failures) < self._limit:
                return None
            return max(1, int(failures[0] + self._window - now + 0.999))

    def failed(self, client: str) -> None:
        with self._lock:
            now = self._clock()
            self._forget_expired(now)
            failures = self._failures.pop(client, None) or deque(maxlen=self._limit)
            failures.append(now)
            self._failures[client] = failures
            while len(self._failures) > self._max_clients:
                self._failures.popitem(last=False)

    def _forget_expired(self, now: float) -> None:
        while self._failures:
            oldest = next(iter(self._failures.values()))
            if oldest[-1] > now - self._window:
                return
            self._failures.popitem(last=False)
