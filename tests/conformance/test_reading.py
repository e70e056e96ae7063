"""The read-rule table (PROTOCOL.md section 4) over each backend's snapshots."""

from __future__ import annotations

from collections.abc import Sequence

from livereplay import GapDetail, GapReason
from livereplay.protocol import ReadProgress
from livereplay.protocol.rules import CaughtUp, Events, Gap, Hello
from livereplay_server.store import Store
from tests.conformance.conftest import MakeStore
from tests.conformance.helpers import append, cursor, follow, page


def positions(out: Sequence[object]) -> list[int]:
    return [e.position for o in out if isinstance(o, Events) for e in o.events]


def gaps(out: Sequence[object]) -> list[Gap]:
    return [o for o in out if isinstance(o, Gap)]


async def test_an_unknown_session_reads_empty_from_zero_and_unknown_after(store: Store) -> None:
    assert await page(store, "s", "earliest") == ([], None, "earliest", True)
    assert await page(store, "s", cursor(0)) == ([], None, cursor(0), True)
    _, gap, next_cursor, caught_up = await page(store, "s", cursor(3))
    assert gap is not None and gap.detail == GapDetail.UNKNOWN_SESSION
    assert (gap.latest_cursor, next_cursor, caught_up) == (None, "earliest", False)


async def test_a_subscription_from_zero_waits_for_the_session_to_appear(store: Store) -> None:
    sub = ReadProgress("s", "earliest")
    out = await follow(store, sub)
    assert out == [Hello(None, None), CaughtUp(None)]
    await append(store, "s", [1, 2])
    assert positions(await follow(store, sub)) == [1, 2]


async def test_earliest_and_latest_start_at_the_oldest_retained_event_and_the_tail(
    make_store: MakeStore,
) -> None:
    store = await make_store(max_events_per_session=3)
    await append(store, "s", range(1, 7))
    earliest = ReadProgress("s", "earliest")
    out = await follow(store, earliest)
    assert out[0] == Hello(cursor(3), cursor(6)) and positions(out) == [4, 5, 6]
    latest = ReadProgress("s", "latest")
    out = await follow(store, latest)
    assert out == [Hello(cursor(6), cursor(6)), CaughtUp(cursor(6))]
    await append(store, "s", [7])
    assert positions(await follow(store, latest)) == [7]


async def test_a_cursor_ahead_of_the_tail_gets_ahead_of_tail(store: Store) -> None:
    await append(store, "s", [1, 2])
    _, gap, next_cursor, _ = await page(store, "s", cursor(5))
    assert gap is not None
    assert (gap.reason, gap.detail) == (GapReason.UNAVAILABLE, GapDetail.AHEAD_OF_TAIL)
    assert next_cursor == cursor(2)


async def test_trimmed_history_is_retention_before_reading_and_lagged_while_reading(
    make_store: MakeStore,
) -> None:
    store = await make_store(max_events_per_session=4)
    await append(store, "s", range(1, 9))
    _, gap, next_cursor, _ = await page(store, "s", cursor(2))
    assert gap is not None
    assert (gap.reason, gap.detail) == (GapReason.TRIMMED, GapDetail.RETENTION)
    assert gap.earliest_cursor == cursor(5) and next_cursor == cursor(8)
    # A reader that read, then fell behind the window, is told it lagged.
    sub = ReadProgress("s", cursor(5))
    assert positions(await follow(store, sub)) == [6, 7, 8]
    await append(store, "s", range(9, 20))
    out = await follow(store, sub)
    assert [g.detail for g in gaps(out)] == [GapDetail.LAGGED]
    assert gaps(out)[0].latest_cursor == cursor(19)


async def test_a_cursor_at_the_tail_resumes_without_a_gap_after_everything_is_trimmed(
    make_store: MakeStore,
) -> None:
    store = await make_store(max_bytes_per_session=1)
    await append(store, "s", [1, 2, 3])
    info = await store.info("s")
    assert info is not None and (info.retained_events, info.earliest_cursor) == (0, None)
    assert info.tail_cursor == cursor(3)
    assert await page(store, "s", cursor(3)) == ([], None, cursor(3), True)
    # earliest starts at the tail when nothing is retained.
    assert await page(store, "s", "earliest") == ([], None, cursor(3), True)


async def test_pages_are_bounded_by_count_and_bytes(make_store: MakeStore) -> None:
    store = await make_store()
    await append(store, "s", range(1, 11), payload="z" * 100)
    assert (await page(store, "s", "earliest", limit=4))[0] == [1, 2, 3, 4]
    positions_, _, next_cursor, caught_up = await page(store, "s", cursor(4), limit=4)
    assert (positions_, next_cursor, caught_up) == ([5, 6, 7, 8], cursor(8), False)
    size = (await store.snapshot("s", 0, 1, 1 << 20)).events[0].size
    snapshot = await store.snapshot("s", 0, 100, size * 3 + 1)
    assert [e.position for e in snapshot.events] == [1, 2, 3]
    # One event larger than the byte bound still goes, alone.
    snapshot = await store.snapshot("s", 0, 100, 1)
    assert [e.position for e in snapshot.events] == [1]


async def test_a_subscription_sees_the_session_deleted_then_continues_from_earliest(
    store: Store,
) -> None:
    await append(store, "s", [1, 2])
    sub = ReadProgress("s", cursor(0))
    assert positions(await follow(store, sub)) == [1, 2]
    await store.delete("s")
    out = await follow(store, sub)
    assert [g.detail for g in gaps(out)] == [GapDetail.SESSION_DELETED]
    await append(store, "s", [1], incarnation="writer-2")
    assert positions(await follow(store, sub)) == [1]
