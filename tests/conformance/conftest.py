"""The `store` fixtures: every conformance test runs once per backend."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from livereplay import Limits
from livereplay_server.memory import MemoryStore
from livereplay_server.store import Store
from tests.conformance.helpers import FakeClock
from tests.support.redis import delete_prefix, redis_url, unique_prefix

__all__ = ["redis_url"]

MakeStore = Callable[..., Awaitable[Store]]


@pytest.fixture
def clock() -> FakeClock:
    """The clock of every store a test makes: time passes when the test advances it."""
    return FakeClock()


@pytest.fixture(params=["memory", "redis"])
async def make_store(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[MakeStore]:
    """Started stores of one backend with the given limits, on the test's `clock`. Redis
    stores made in one test share one key prefix, as daemons sharing a Redis do."""
    backend: str = request.param
    url: str = request.getfixturevalue("redis_url") if backend == "redis" else ""
    prefix = unique_prefix()
    stores: list[Store] = []

    async def make(**limits: Any) -> Store:
        store: Store
        if backend == "memory":
            store = MemoryStore(Limits(**limits), clock)
        else:
            from livereplay_server.redis_store import RedisStore

            store = RedisStore(Limits(**limits), url, prefix, clock)
        await store.start()
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()
    if backend == "redis":
        await delete_prefix(url, prefix)


@pytest.fixture
async def store(make_store: MakeStore) -> Store:
    return await make_store()
