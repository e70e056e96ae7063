"""Redis-only fixtures: the shared test Redis with a prefix per test, or a Redis of the
test's own that it can kill and restart."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.redis import RedisServer, redis_prefix, redis_url

__all__ = ["redis_prefix", "redis_url"]


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server for this test alone (started here even with an external URL set)."""
    with RedisServer() as server:
        yield server
