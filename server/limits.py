"""Per-client rate limiting: a token bucket for each client, refilled at a steady rate."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from ekyc.errors import EkycError

MAX_TRACKED_CLIENTS = 100_000


class RateLimitedError(EkycError):
    """The client sent more requests than its rate allows; it should retry later."""


class RateLimiter:
    """``per_minute`` requests a minute per client with bursts of ``burst``; 0 disables it."""

    def __init__(self, per_minute: float, burst: int):
        self.per_second = per_minute / 60.0
        self.burst = max(1, burst)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.per_second > 0

    def check(self, client: str, cost: float = 1.0) -> None:
        """Take ``cost`` tokens from the client's bucket or raise RateLimitedError."""
        if not self.enabled:
            return
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.pop(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.per_second)
            if tokens < cost:
                self._buckets[client] = (tokens, now)
                wait = (cost - tokens) / self.per_second
                raise RateLimitedError(f"rate limit exceeded for this client; retry in {wait:.1f} s")
            self._buckets[client] = (tokens - cost, now)
            while len(self._buckets) > MAX_TRACKED_CLIENTS:
                self._buckets.popitem(last=False)
