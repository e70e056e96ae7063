"""Change notifications, as the reader socket uses them: watch, take the session's
next change, read a snapshot, then wait."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from livereplay import AppendRefused
from livereplay_server.store import Store
from tests.conformance.conftest import MakeStore
from tests.conformance.helpers import FakeClock, append, changed, eventually

Action = Callable[[Store], Awaitable[object]]


@pytest.fixture
async def watching(store: Store) -> AsyncIterator[Store]:
    store.changes.watch("s")
    yield store
    store.changes.unwatch("s")


async def caught_up(store: Store) -> asyncio.Future[None]:
    """A reader at the tail: the future it waits on."""
    future = store.changes.next_change("s")
    await store.snapshot("s", 2**64 - 1, 10, 1 << 20)
    return future


async def refused_append(store: Store) -> None:
    with pytest.raises(AppendRefused):
        await append(store, "s", [9], incarnation="writer-0")


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        pytest.param(lambda s: append(s, "s", [3]), True, id="append"),
        pytest.param(lambda s: append(s, "s", [1], incarnation="writer-2"), True, id="takeover"),
        pytest.param(lambda s: s.delete("s"), True, id="delete"),
        pytest.param(lambda s: s.append("s", None, []), False, id="empty-batch"),
        pytest.param(lambda s: append(s, "s", [1, 2]), False, id="duplicates"),
        pytest.param(refused_append, False, id="refused"),
    ],
)
async def test_readers_are_told_of_every_change_and_only_of_changes(
    watching: Store, action: Action, expected: bool
) -> None:
    store = watching
    await append(store, "s", [1], incarnation="writer-0")
    setup = store.changes.next_change("s")
    await append(store, "s", [1, 2])
    # The takeover's own notice has arrived (Redis delivers it a moment later).
    assert await changed(setup)
    future = await caught_up(store)
    await action(store)
    assert await changed(future, timeout=2.0 if expected else 0.3) is expected


async def test_a_trim_that_drops_events_tells_readers(
    make_store: MakeStore, clock: FakeClock
) -> None:
    store = await make_store(max_age_ms=200)
    store.changes.watch("s")
    await append(store, "s", [1])
    future = await caught_up(store)
    clock.advance(250)
    assert await store.trim("s") == 1
    assert await changed(future)
    store.changes.unwatch("s")


async def test_a_reader_hears_of_its_session_expiring(
    make_store: MakeStore, clock: FakeClock
) -> None:
    store = await make_store(session_idle_ttl_ms=300)
    store.changes.watch("s")
    await append(store, "s", [1])
    future = await caught_up(store)

    async def told() -> bool:
        return future.done()

    await eventually(told, store, clock)
    assert await store.info("s") is None
    store.changes.unwatch("s")


async def test_an_append_before_the_wait_is_not_missed(watching: Store) -> None:
    """The change taken before the snapshot fires even if the append lands between the
    snapshot and the wait: nothing falls in the cut."""
    store = watching
    await append(store, "s", [1])
    for position in range(2, 30):
        future = await caught_up(store)
        await append(store, "s", [position])
        assert await changed(future)
