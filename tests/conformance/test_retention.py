"""Retention by events, bytes and age, `trim`, and idle expiry of whole sessions."""

from __future__ import annotations

from livereplay import GapDetail
from tests.conformance.conftest import MakeStore
from tests.conformance.helpers import FakeClock, append, cursor, eventually, page


async def test_retention_by_events_keeps_the_newest(make_store: MakeStore) -> None:
    store = await make_store(max_events_per_session=5)
    await append(store, "s", range(1, 5))
    await append(store, "s", range(5, 13))
    info = await store.info("s")
    assert info is not None
    assert (info.retained_events, info.earliest_cursor) == (5, cursor(8))
    assert info.tail_cursor == cursor(12)
    assert (await page(store, "s", cursor(7)))[0] == [8, 9, 10, 11, 12]


async def test_retention_by_bytes_counts_each_events_json_encoding(make_store: MakeStore) -> None:
    probe = await make_store()
    await append(probe, "t", [1], payload="p" * 200)  # same id length as "s"
    size = (await probe.snapshot("t", 0, 1, 1 << 20)).events[0].size
    store = await make_store(max_bytes_per_session=size * 3 + size // 2)
    await append(store, "s", range(1, 6), payload="p" * 200)
    info = await store.info("s")
    assert info is not None
    assert (info.retained_events, info.retained_bytes) == (3, size * 3)
    assert info.earliest_cursor == cursor(3)
    # A larger event pushes out as many old ones as it takes.
    await append(store, "s", [6], payload="p" * 400)
    info = await store.info("s")
    assert info is not None and info.retained_bytes <= size * 3 + size // 2
    assert (await page(store, "s", cursor(4)))[0][-1] == 6


async def test_retention_by_age_never_serves_an_expired_event(
    make_store: MakeStore, clock: FakeClock
) -> None:
    store = await make_store(max_age_ms=600)
    await append(store, "s", [1, 2])
    clock.advance(400)
    await append(store, "s", [3])
    clock.advance(300)
    _, gap, _, _ = await page(store, "s", cursor(0))
    assert gap is not None and gap.detail == GapDetail.RETENTION
    assert gap.earliest_cursor == cursor(3)
    assert (await page(store, "s", cursor(2)))[0] == [3]
    clock.advance(400)
    # The metadata outlives the events: the tail still resumes without a gap.
    assert await page(store, "s", cursor(3)) == ([], None, cursor(3), True)
    info = await store.info("s")
    assert info is not None and info.retained_events == 0 and info.tail_cursor == cursor(3)


async def test_trim_applies_retention_now(make_store: MakeStore, clock: FakeClock) -> None:
    store = await make_store(max_age_ms=200)
    assert await store.trim("s") is None
    await append(store, "s", range(1, 4))
    clock.advance(199)
    assert await store.trim("s") == 0  # younger than max_age: kept
    clock.advance(1)
    assert await store.trim("s") == 3
    info = await store.info("s")
    assert info is not None and info.retained_events == 0 and info.retained_bytes == 0


async def test_holes_are_forgotten_once_below_the_window(make_store: MakeStore) -> None:
    store = await make_store(max_events_per_session=2)
    await append(store, "s", [1, 5])
    _, gap, _, _ = await page(store, "s", cursor(1))
    assert gap is not None and gap.detail == GapDetail.WRITER_OVERFLOW
    await append(store, "s", [6, 7])
    _, gap, _, _ = await page(store, "s", cursor(1))
    assert gap is not None and gap.detail == GapDetail.RETENTION


async def test_a_hole_just_below_the_window_still_answers_a_cursor_before_it(
    make_store: MakeStore,
) -> None:
    store = await make_store(max_events_per_session=2)
    await append(store, "s", [1, 2, 5])
    await append(store, "s", [6])
    # 2 is trimmed, but a reader at 2 missed only the hole 3..4.
    _, gap, _, _ = await page(store, "s", cursor(2))
    assert gap is not None and gap.detail == GapDetail.WRITER_OVERFLOW
    _, gap, _, _ = await page(store, "s", cursor(1))
    assert gap is not None and gap.detail == GapDetail.RETENTION


async def test_an_idle_session_expires_with_its_metadata(
    make_store: MakeStore, clock: FakeClock
) -> None:
    store = await make_store(session_idle_ttl_ms=300)
    await append(store, "idle", [1])
    await append(store, "busy", [1])
    await append(store, "idle", [1], incarnation="writer-2")
    busy = 1

    async def idle_gone() -> bool:
        nonlocal busy
        busy += 1  # appended to between tries: it never idles
        await append(store, "busy", [busy])
        return await store.info("idle") is None

    await eventually(idle_gone, store, clock)
    assert await store.info("busy") is not None
    # Its superseded incarnations are forgotten with it.
    assert (await append(store, "idle", [1])).created
