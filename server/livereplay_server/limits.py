"""Connection counts and append rates: plain bookkeeping, no I/O."""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import DomainError


@dataclass(slots=True)
class ConnectionLimiter:
    """WebSocket connections in total and per client address."""

    max_total: int
    max_per_client: int
    total: int = 0
    per_client: Counter[str] = field(default_factory=Counter)

    def acquire(self, client: str) -> None:
        if self.total >= self.max_total:
            raise DomainError("too_many_connections", "the daemon is at its connection limit")
        if self.per_client[client] >= self.max_per_client:
            raise DomainError(
                "too_many_connections", "this client address is at its connection limit"
            )
        self.total += 1
        self.per_client[client] += 1

    def release(self, client: str) -> None:
        self.total -= 1
        self.per_client[client] -= 1
        if self.per_client[client] <= 0:
            del self.per_client[client]


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """A token bucket per writer (events per second, with a burst), for a bounded set of
    writers: the least recently seen writer is forgotten first (a fresh bucket is full)."""

    def __init__(
        self,
        rate: float,
        burst: float,
        max_writers: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.max_writers = max_writers
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, writer: str, events: int) -> None:
        """Take `events` tokens, or refuse."""
        if self.rate <= 0:
            return
        now = self._clock()
        bucket = self._buckets.pop(writer, None) or _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        self._buckets[writer] = bucket
        while len(self._buckets) > self.max_writers:
            self._buckets.popitem(last=False)
        # A full bucket takes any batch, into debt, so one larger than the burst is not
        # refused forever; the next batches wait until the debt is paid.
        if events > bucket.tokens and bucket.tokens < self.burst:
            wait_s = (min(events, self.burst) - bucket.tokens) / self.rate
            raise DomainError(
                "rate_limited",
                f"over the append rate of {self.rate:g} events/s for this writer",
                wait_s,
            )
        bucket.tokens -= events
