"""The reference model (model.py) against every `Store` backend, through the `Store`
interface only, on an injected clock: appends of every kind, trims, deletes, reads and
the passing of time, each answer checked, for memory and for Redis alike."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test

from livereplay.protocol import AppendResult, Snapshot
from livereplay.protocol.clock import Clock
from livereplay.protocol.records import NewEvent
from livereplay_server.memory import MemoryStore
from livereplay_server.store import Store
from tests.conformance.model import (
    LIMITS,
    MAX_EVENTS,
    SESSIONS,
    LogModel,
    Reference,
    decoded,
    held,
)
from tests.support.redis import delete_prefix, unique_prefix

T = TypeVar("T")
# No memory budget and no idle expiry within a run: Redis has neither (it expires idle
# sessions on its own clock); tests/core/test_model.py checks both on the table.
WHOLE = MAX_EVENTS + 1  # a page that holds every retained event
SETTINGS = settings(max_examples=100, stateful_step_count=50, deadline=None)

MakeStore = Callable[[Clock], tuple[Store, Callable[[], Coroutine[Any, Any, None]]]]


class StoreModel(LogModel):
    """One store per run, on its own event loop; its clock is the model's `now`."""

    AGES_ON_READ = True

    def __init__(self, make: MakeStore) -> None:
        super().__init__(Reference(LIMITS.memory_budget_bytes, LIMITS.session_idle_ttl_ms))
        self.runner = asyncio.Runner()
        self.store, self.cleanup = make(lambda: self.now)
        self.run(self.store.start())

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coro)

    def teardown(self) -> None:
        try:
            self.run(self.store.close())
            self.run(self.cleanup())
        finally:
            self.runner.close()

    def write(
        self, sid: str, inc: str | None, events: list[NewEvent], restore_to: int | None
    ) -> AppendResult:
        return self.run(self.store.append(sid, inc, events, restore_to=restore_to))

    def read(self, sid: str, after: int, limit: int, max_bytes: int) -> Snapshot:
        return self.run(self.store.snapshot(sid, after, limit, max_bytes))

    def backend_trim(self, sid: str) -> int | None:
        return self.run(self.store.trim(sid))

    def backend_delete(self, sid: str) -> bool:
        return self.run(self.store.delete(sid))

    def state(self) -> Any:
        return [self.held(sid) for sid in SESSIONS]

    def held(self, sid: str) -> tuple[Any, ...] | None:
        head = self.observe(sid, 0, WHOLE, 1 << 20)
        if head.head is None:
            return None
        events = [(decoded(e.data), e.size) for e in head.events]
        return (head.head.incarnation, head.head.tail, head.head.latest_revision, events)

    def check_agreement(self) -> None:
        # What a session reports of itself first: it must not count an expired event.
        for sid in SESSIONS:
            self.ref.trim(sid, self.now)
            info = self.run(self.store.info(sid))
            session = self.ref.sessions.get(sid)
            if session is None:
                assert info is None
                continue
            assert info is not None
            assert (info.incarnation, info.tail_cursor, info.earliest_cursor) == (
                session.incarnation,
                session.tail_cursor,
                session.oldest_cursor,
            )
            assert (info.retained_events, info.retained_bytes) == (
                len(session.retained),
                sum(session.accepted[p].size for p in session.retained),
            )
        listed = self.run(self.store.list_sessions(None, len(SESSIONS) + 1))
        assert [i.session_id for i in listed] == sorted(self.ref.sessions)
        for sid in SESSIONS:
            session = self.ref.sessions.get(sid)
            assert self.held(sid) == (None if session is None else held(session))


def memory(clock: Clock) -> tuple[Store, Callable[[], Coroutine[Any, Any, None]]]:
    async def nothing() -> None:
        pass

    return MemoryStore(LIMITS, clock), nothing


def redis_at(url: str) -> MakeStore:
    def make(clock: Clock) -> tuple[Store, Callable[[], Coroutine[Any, Any, None]]]:
        from livereplay_server.redis_store import RedisStore

        prefix = unique_prefix()

        async def cleanup() -> None:
            await delete_prefix(url, prefix)

        return RedisStore(LIMITS, url, prefix, clock), cleanup

    return make


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_the_store_follows_the_reference(backend: str, request: pytest.FixtureRequest) -> None:
    make = memory if backend == "memory" else redis_at(request.getfixturevalue("redis_url"))

    class OnThisBackend(StoreModel):
        def __init__(self) -> None:
            super().__init__(make)

    run_state_machine_as_test(OnThisBackend, settings=SETTINGS)
