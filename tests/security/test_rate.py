"""The per-writer append rate as plain bookkeeping, on a clock the test moves."""

from __future__ import annotations

import pytest

from livereplay_server.errors import DomainError
from livereplay_server.limits import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_the_rate_and_a_hint_of_when_to_come_back() -> None:
    clock = Clock()
    rate = RateLimiter(10, burst=20, clock=clock)
    rate.take("w", 20)
    with pytest.raises(DomainError) as refused:
        rate.take("w", 5)
    assert refused.value.retry_after_s == pytest.approx(0.5)
    clock.now = 0.5
    rate.take("w", 5)


def test_a_batch_larger_than_the_burst_is_taken_once_the_bucket_is_full() -> None:
    """Else it would be refused forever, and a writer retrying it would never get on."""
    clock = Clock()
    rate = RateLimiter(10, burst=20, clock=clock)
    rate.take("w", 5)
    with pytest.raises(DomainError) as refused:
        rate.take("w", 100)
    assert refused.value.retry_after_s == pytest.approx(0.5)  # until the bucket is full
    clock.now = 0.5
    rate.take("w", 100)  # into debt: 80 tokens owed
    clock.now = 8.0
    with pytest.raises(DomainError):
        rate.take("w", 1)  # the debt is not paid yet (-80 + 75 tokens)
    clock.now = 8.7
    rate.take("w", 1)


def test_writers_have_their_own_buckets_and_the_oldest_is_forgotten_first() -> None:
    clock = Clock()
    rate = RateLimiter(10, burst=20, max_writers=2, clock=clock)
    rate.take("a", 20)
    rate.take("b", 20)
    rate.take("c", 20)  # "a" is forgotten: a fresh bucket is full again
    rate.take("a", 20)
    with pytest.raises(DomainError):
        rate.take("c", 1)
