"""Listing sessions, their figures, and the store's totals for /metrics."""

from __future__ import annotations

from livereplay_server.store import Store
from tests.conformance.conftest import MakeStore
from tests.conformance.helpers import FakeClock, append, cursor, eventually


async def test_sessions_are_listed_in_id_order_page_by_page(store: Store) -> None:
    ids = ["b", "a:1", "c.x", "a", "B-2", "z~"]
    for i, session_id in enumerate(ids):
        await append(store, session_id, range(1, i + 2))
    await store.delete("c.x")
    listed: list[str] = []
    after: str | None = None
    while True:
        page = await store.list_sessions(after, 2)
        listed += [info.session_id for info in page]
        if len(page) < 2:
            break
        after = page[-1].session_id
    assert listed == sorted(set(ids) - {"c.x"})
    (info,) = [i for i in await store.list_sessions("a", 1)]
    assert info.session_id == "a:1"
    assert (info.retained_events, info.tail_cursor) == (2, cursor(2, session_id="a:1"))
    assert info.earliest_cursor == cursor(1, session_id="a:1")
    assert info.retained_bytes > 0


async def test_a_prefix_lists_only_the_sessions_under_it(store: Store) -> None:
    ids = ["a", "team", "team-a:1", "team-a:2", "team-a:3", "team-b", "teamz", "z"]
    for session_id in ids:
        await append(store, session_id, [1])

    async def listed(after: str | None, limit: int, prefix: str) -> list[str]:
        return [i.session_id for i in await store.list_sessions(after, limit, prefix=prefix)]

    assert await listed(None, 10, "team-a:") == ["team-a:1", "team-a:2", "team-a:3"]
    assert await listed(None, 2, "team-a:") == ["team-a:1", "team-a:2"]
    assert await listed("team-a:1", 10, "team-a:") == ["team-a:2", "team-a:3"]
    assert await listed("a", 10, "team-a:") == ["team-a:1", "team-a:2", "team-a:3"]
    assert await listed("team-b", 10, "team-a:") == []
    assert await listed(None, 10, "team") == ids[1:7]
    assert await listed(None, 10, "nobody") == []


async def test_expired_sessions_leave_the_list(make_store: MakeStore, clock: FakeClock) -> None:
    store = await make_store(session_idle_ttl_ms=200)
    await append(store, "gone", [1])

    async def gone() -> bool:
        return [i.session_id for i in await store.list_sessions(None, 10)] == []

    await eventually(gone, store, clock)


async def test_stats_add_up_the_retained_window(make_store: MakeStore) -> None:
    store = await make_store(max_events_per_session=3)
    await append(store, "s1", range(1, 6), payload="q" * 50)
    await append(store, "s2", [1], payload="q" * 50)
    infos = await store.list_sessions(None, 10)
    total_bytes = sum(i.retained_bytes for i in infos)

    async def settled() -> bool:
        stats = store.stats()
        return (stats.sessions, stats.retained_events, stats.retained_bytes) == (
            2,
            4,
            total_bytes,
        )

    await eventually(settled, store)
    assert store.stats().trimmed["events"] == 2
