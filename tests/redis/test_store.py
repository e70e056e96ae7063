"""What only the Redis backend has: its key layout, stores sharing one Redis as daemons
do, the per-process subscription, and Redis going away and coming back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from livereplay import AppendRefused, Limits
from livereplay_server.redis_store import RedisStore
from livereplay_server.store import StoreUnavailable
from tests.conformance.helpers import INC, append, changed, cursor, events, page
from tests.support.redis import RedisServer, delete_prefix, unique_prefix

MakeStore = Callable[..., Awaitable[RedisStore]]


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Redis]:
    r = Redis.from_url(redis_url)
    yield r
    await r.aclose()


@pytest.fixture
async def make_store(redis_url: str, redis_prefix: str) -> AsyncIterator[MakeStore]:
    """Stores on the shared test Redis under this test's prefix: several daemons' worth."""
    stores: list[RedisStore] = []

    async def make(url: str = redis_url, **limits: int) -> RedisStore:
        store = RedisStore(Limits(**limits), url, redis_prefix)
        await store.start()
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()


async def test_keys_live_under_the_prefix_in_one_slot_per_session(
    make_store: MakeStore, client: Redis, redis_prefix: str
) -> None:
    store = await make_store(session_idle_ttl_ms=60_000)
    await append(store, "s:1", [1, 2, 5])
    await append(store, "s:1", [3], incarnation="writer-2")
    await append(store, "s:1", [4, 9], incarnation="writer-2")
    await append(store, "t", [1])
    keys = sorted(
        k.decode() if isinstance(k, bytes) else k for k in await client.keys(f"{redis_prefix}:*")
    )
    base = f"{redis_prefix}:{{s:1}}:"
    assert keys == sorted(
        [
            f"{redis_prefix}:instance",
            f"{redis_prefix}:sessions",
            *(base + k for k in ("meta", "stream", "holes", "superseded")),
            *(f"{redis_prefix}:{{t}}:{k}" for k in ("meta", "stream")),
        ]
    )
    assert len({key_slot(k.encode()) for k in keys if k.startswith(base)}) == 1
    # Stream entry IDs are the positions.
    entries = await client.xrange(base + "stream")
    assert entries is not None
    assert [e[0] for e in entries] == [b"3-0", b"4-0", b"9-0"]
    assert await client.lrange(base + "holes", 0, -1) == [b"5:8"]
    assert await client.lrange(base + "superseded", 0, -1) == [INC.encode()]
    # Idle expiry: every key of the session expires with its last append.
    for suffix in ("meta", "stream", "holes", "superseded"):
        assert 59_000 < await client.pttl(base + suffix) <= 60_000
    # The data set's id, and when it began (a startup grace runs from then).
    instance = await client.get(f"{redis_prefix}:instance")
    assert instance == f"{store.instance_id}:{store.data_since_ms}".encode()


async def test_two_stores_on_one_redis_are_one_service(make_store: MakeStore) -> None:
    a, b = await make_store(), await make_store()
    assert a.instance_id == b.instance_id
    b.changes.watch("s")
    await append(a, "s", [1, 2])
    future = b.changes.next_change("s")
    assert (await page(b, "s", "earliest"))[0] == [1, 2]
    await append(a, "s", [3])
    assert await changed(future)
    assert (await page(b, "s", cursor(2)))[0] == [3]
    # Daemon-assigned positions stay distinct when two daemons race.
    results = await asyncio.gather(
        *(store.append("d", None, events(count=2)) for store in (a, b) * 8)
    )
    assert sorted(c.position for r in results for c in r.cursors) == list(range(1, 33))
    b.changes.unwatch("s")


async def test_one_subscription_per_process_follows_the_watched_sessions(
    make_store: MakeStore, client: Redis, redis_prefix: str
) -> None:
    store = await make_store()
    sessions = ["a", "b", "c"]
    for _ in range(10):
        for session_id in sessions:
            store.changes.watch(session_id)
    for session_id in sessions:
        await store.snapshot(session_id, 0, 1, 1)  # waits for the subscription
    channels = [f"{redis_prefix}:{{{s}}}:changes" for s in sessions]
    assert dict(await client.pubsub_numsub(*channels)) == {c.encode(): 1 for c in channels}
    feed_clients = [c for c in await client.client_list() if c["name"].endswith("-feed")]
    assert sum(int(c["sub"]) for c in feed_clients) == 3
    for _ in range(10):
        store.changes.unwatch("a")

    async def unsubscribed() -> bool:
        return dict(await client.pubsub_numsub(channels[0]))[channels[0].encode()] == 0

    for _ in range(100):
        if await unsubscribed():
            break
        await asyncio.sleep(0.02)
    assert await unsubscribed()


async def test_redis_down_refuses_clearly_and_service_resumes_by_itself(
    own_redis: RedisServer, make_store: MakeStore
) -> None:
    store = await make_store(own_redis.url)
    first_instance = store.instance_id
    store.changes.watch("s")
    await append(store, "s", [1])
    waiting = store.changes.next_change("s")
    await store.snapshot("s", 1, 10, 1 << 20)
    own_redis.kill()
    # A waiting reader is woken, and its next read fails: the socket closes with 1011.
    assert await changed(waiting)
    with pytest.raises(StoreUnavailable):
        await store.snapshot("s", 1, 10, 1 << 20)
    with pytest.raises(StoreUnavailable):
        await append(store, "s", [2])
    assert await store.ready() is False

    own_redis.start()
    for _ in range(200):
        store.sweep()
        if await store.ready() and store.instance_id != first_instance:
            break
        await asyncio.sleep(0.05)
    assert await store.ready()
    # Redis lost its data: a new instance id tells writers to re-send their window.
    assert store.instance_id != first_instance
    result = await append(store, "s", [1, 2])
    assert result.created and result.accepted == 2
    waiting = store.changes.next_change("s")
    await store.snapshot("s", 2, 10, 1 << 20)
    await append(store, "s", [3])
    assert await changed(waiting)
    store.changes.unwatch("s")


async def test_a_batch_never_lands_in_a_data_set_the_daemon_has_not_seen(
    make_store: MakeStore, client: Redis, redis_prefix: str
) -> None:
    """Redis restarted empty while the change feed had not noticed (a pooled command
    connection reconnects at once): the append script checks the data set, so the
    batch is refused for now instead of starting the session over from its middle,
    and the store learns the new data set (its writers then re-send their windows)."""
    store = await make_store()
    await append(store, "s", [1, 2])
    before = (store.instance_id, store.data_since_ms)
    for key in await client.keys(f"{redis_prefix}:*"):
        await client.delete(key)  # what a restart without persistence leaves
    with pytest.raises(StoreUnavailable, match="data set changed"):
        await append(store, "s", [3])
    assert await client.keys(f"{redis_prefix}:{{s}}:*") == []  # nothing written
    for _ in range(100):
        if store.instance_id != before[0] and store.instance_known and store._feed.live:
            break
        await asyncio.sleep(0.05)
    assert store.instance_id != before[0] and store.data_since_ms >= before[1]
    # A writer still holding the old welcome is told to reconnect; a new one is served.
    with pytest.raises(StoreUnavailable):
        await store.append("s", INC, events([3]), instance=before[0])
    result = await store.append("s", INC, events([1, 2, 3]), instance=store.instance_id)
    assert result.created and result.accepted == 3


async def test_tests_touch_only_keys_under_their_prefix(redis_url: str, client: Redis) -> None:
    other = unique_prefix()
    await client.set(f"{other}-neighbour", "keep")
    mine = unique_prefix()
    store = RedisStore(Limits(), redis_url, mine)
    await store.start()
    await append(store, "s", [1])
    await store.close()
    assert await delete_prefix(redis_url, mine) >= 3
    assert await client.get(f"{other}-neighbour") == b"keep"
    await client.delete(f"{other}-neighbour")


async def test_a_store_started_before_redis_serves_once_redis_arrives(redis_prefix: str) -> None:
    server = RedisServer()
    store = RedisStore(Limits(), server.url, redis_prefix)
    starting = asyncio.create_task(store.start())
    await asyncio.sleep(0.3)
    assert await store.ready() is False
    with pytest.raises(StoreUnavailable):
        await append(store, "s", [1])
    with server:
        await asyncio.wait_for(starting, 10)
        assert await store.ready()
        assert (await append(store, "s", [1])).accepted == 1
        await store.close()


async def test_appends_queued_behind_one_in_flight_go_together(make_store: MakeStore) -> None:
    """Group commit: a busy session costs one script call per round trip, not per
    append, and each append still gets its own positions, in one contiguous run."""
    store = await make_store()
    calls = 0
    run_append = store._run_append

    async def counted(*args: object, **kwargs: object) -> list[object]:
        nonlocal calls
        calls += 1
        return await run_append(*args, **kwargs)  # type: ignore[arg-type]

    store._run_append = counted  # type: ignore[method-assign]
    results = await asyncio.gather(*(store.append("s", None, events(count=3)) for _ in range(30)))
    assert calls <= 3  # the first alone, the other 29 in one or two groups
    runs = [[c.position for c in r.cursors] for r in results]
    assert sorted(p for run in runs for p in run) == list(range(1, 91))
    assert all(run == list(range(run[0], run[0] + 3)) for run in runs)
    assert [r.accepted for r in results] == [3] * 30
    assert sum(r.created for r in results) == 1
    tails = {r.tail_cursor.position for r in results if r.tail_cursor is not None}
    assert max(tails) == 90
    assert (await page(store, "s", "earliest"))[0] == list(range(1, 91))


async def test_a_refused_append_in_a_group_refuses_only_itself(make_store: MakeStore) -> None:
    store = await make_store()
    top = 2**64 - 1
    await append(store, "s", [top - 4])
    results = await asyncio.gather(
        *(store.append("s", None, events(count=2)) for _ in range(4)), return_exceptions=True
    )
    # The first goes alone (up to top - 2); the group of three would pass 2^64-1 together,
    # so it is answered one by one: one more fits, two are refused.
    ok = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, AppendRefused)]
    assert sorted(c.position for r in ok for c in r.cursors) == [top - 3, top - 2, top - 1, top]
    assert [r.code for r in refused] == ["invalid_event"] * 2
