"""Reconnect backoff, the one used by the reader, the writer and the daemon's Redis feed."""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Exponential backoff with full jitter: a delay drawn from [0, min(cap, base * 2^n)).

    `uniform` draws the delay (default `random.uniform`); tests pass their own.
    """

    def __init__(
        self,
        base: float,
        cap: float,
        uniform: Callable[[float, float], float] | None = None,
    ) -> None:
        self.base = base
        self.cap = cap
        self.attempt = 0
        self._uniform = uniform

    def ceiling(self) -> float:
        """The bound of the next delay."""
        return min(self.cap, self.base * 2.0 ** min(self.attempt, 60))

    def next(self) -> float:
        ceiling = self.ceiling()
        self.attempt += 1
        return (self._uniform or random.uniform)(0, ceiling)

    def reset(self) -> None:
        self.attempt = 0
