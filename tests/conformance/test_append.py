"""The append rules (PROTOCOL.md section 5), the same for every backend."""

from __future__ import annotations

import asyncio
import json

import msgspec
import pytest

from livereplay import AppendRefused, Cursor, GapDetail, GapReason
from livereplay.protocol.records import EventIn, EventOut
from livereplay_server.store import Store
from tests.conformance.conftest import MakeStore
from tests.conformance.helpers import INC, append, cursor, events, page, pos

U64_MAX = 2**64 - 1


async def test_next_positions_are_accepted_with_one_cursor_per_event(store: Store) -> None:
    result = await append(store, "s", [1, 2, 3], revision=7)
    assert (result.accepted, result.duplicates, result.created) == (3, 0, True)
    assert [str(c) for c in result.cursors] == [f"lashsc2:{INC}:7:{p}:s" for p in (1, 2, 3)]
    assert result.tail_cursor == cursor(3, rev=7)
    result = await append(store, "s", [4], revision=8)
    assert (result.accepted, result.created, result.tail_cursor) == (1, False, cursor(4, rev=8))
    assert (await page(store, "s", "earliest"))[0] == [1, 2, 3, 4]


async def test_stored_events_carry_the_protocol_fields_and_the_payload_unchanged(
    store: Store,
) -> None:
    payload = {"text": "héllo \u2028", "n": [1, 2.5, None], "nested": {"k": True}}
    raw = msgspec.Raw(json.dumps(payload).encode())
    await store.append("s-1:x", INC, [EventIn(revision=3, payload=raw, position=1, turn_id="t9")])
    snapshot = await store.snapshot("s-1:x", 0, 10, 1 << 20)
    (stored,) = snapshot.events
    event = msgspec.json.decode(stored.data, type=EventOut)
    assert event.session_id == "s-1:x" and event.replay_incarnation_id == INC
    assert (event.turn_id, event.revision, event.position) == ("t9", 3, 1)
    assert event.cursor == f"lashsc2:{INC}:3:1:s-1:x"
    assert event.payload == payload and event.ts == stored.ts_ms
    assert stored.size == len(stored.data)


async def test_retransmitted_positions_are_duplicates_even_once_trimmed(
    make_store: MakeStore,
) -> None:
    store = await make_store(max_events_per_session=3)
    await append(store, "s", range(1, 6))
    again = await append(store, "s", range(1, 6), payload="different")
    assert (again.accepted, again.duplicates) == (0, 5)
    assert again.tail_cursor == cursor(5)
    overlap = await append(store, "s", range(4, 8))
    assert (overlap.accepted, overlap.duplicates) == (2, 2)
    assert [c.position for c in overlap.cursors] == [4, 5, 6, 7]
    assert (await page(store, "s", "earliest"))[0] == [5, 6, 7]


async def test_a_jump_forward_is_a_hole_served_as_writer_overflow(store: Store) -> None:
    await append(store, "s", [1, 2])
    await append(store, "s", [5, 6, 9])
    _, gap, next_cursor, _ = await page(store, "s", cursor(2))
    assert gap is not None
    assert (gap.reason, gap.detail) == (GapReason.TRIMMED, GapDetail.WRITER_OVERFLOW)
    assert gap.latest_cursor == cursor(9) and next_cursor == cursor(9)
    assert gap.earliest_cursor == cursor(1)
    _, gap, _, _ = await page(store, "s", cursor(7))
    assert gap is not None and gap.detail == GapDetail.WRITER_OVERFLOW
    # Positions around the holes are served; a page stops before a hole.
    assert (await page(store, "s", cursor(5)))[:2] == ([6], None)
    assert (await page(store, "s", "earliest"))[0] == [1, 2]
    assert (await page(store, "s", cursor(8)))[:2] == ([9], None)
    snapshot = await store.snapshot("s", 0, 10, 1 << 20)
    assert pos(snapshot.events) == [1, 2, 5, 6, 9]


async def test_the_first_position_of_a_new_session_sets_its_floor(store: Store) -> None:
    await append(store, "s", range(10, 13))
    positions, gap, _, _ = await page(store, "s", "earliest")
    assert positions == [10, 11, 12] and gap is None
    assert (await page(store, "s", cursor(9)))[:2] == ([10, 11, 12], None)
    _, gap, _, _ = await page(store, "s", cursor(4))
    assert gap is not None
    assert (gap.reason, gap.detail) == (GapReason.TRIMMED, GapDetail.RETENTION)
    # Below the floor is a duplicate, not a hole.
    assert (await append(store, "s", [3])).duplicates == 1


async def test_a_new_incarnation_takes_over_with_a_fresh_log(store: Store) -> None:
    await append(store, "s", range(1, 6))
    result = await append(store, "s", [3, 4], incarnation="writer-2", revision=9)
    assert (result.accepted, result.took_over, result.created) == (2, True, False)
    assert result.tail_cursor == cursor(4, incarnation="writer-2", rev=9)
    _, gap, _, _ = await page(store, "s", cursor(5))
    assert gap is not None
    assert (gap.reason, gap.detail) == (GapReason.UNAVAILABLE, GapDetail.INCARNATION_CHANGED)
    assert gap.latest_cursor == cursor(4, incarnation="writer-2", rev=9)
    assert (await page(store, "s", "earliest"))[0] == [3, 4]
    with pytest.raises(AppendRefused) as refused:
        await append(store, "s", [6])
    assert refused.value.code == "incarnation_superseded"
    info = await store.info("s")
    assert info is not None and info.tail_cursor.position == 4


async def test_delete_forgets_superseded_incarnations(store: Store) -> None:
    await append(store, "s", [1])
    await append(store, "s", [1], incarnation="writer-2")
    assert await store.delete("s") is True
    assert await store.info("s") is None
    assert await store.delete("s") is False
    result = await append(store, "s", [7])
    assert (result.accepted, result.created) == (1, True)


async def test_the_memory_of_superseded_incarnations_is_bounded(store: Store) -> None:
    """Only the last 64 superseded incarnations are refused; older ones may write again
    (and then take over, as any new incarnation does)."""
    for i in range(66):
        await append(store, "s", [1], incarnation=f"w{i}")
    with pytest.raises(AppendRefused):
        await append(store, "s", [2], incarnation="w64")
    result = await append(store, "s", [1], incarnation="w0")
    assert result.took_over


async def test_daemon_assigned_positions_follow_the_current_incarnation(store: Store) -> None:
    first = await store.append("s", None, events(count=2))
    assert first.created and [c.position for c in first.cursors] == [1, 2]
    own = first.cursors[0].incarnation
    assert first.tail_cursor == Cursor(own, 1, 2, "s")
    second = await store.append("s", None, events(count=1, revision=4))
    assert second.cursors == [Cursor(own, 4, 3, "s")]
    await append(store, "s", [10], incarnation="writer-2")
    third = await store.append("s", None, events(count=1))
    assert third.cursors == [Cursor("writer-2", 1, 11, "s")]


async def test_concurrent_daemon_assigned_appends_get_distinct_positions(store: Store) -> None:
    results = await asyncio.gather(*(store.append("s", None, events(count=3)) for _ in range(20)))
    positions = sorted(c.position for r in results for c in r.cursors)
    assert positions == list(range(1, 61))
    assert len({r.cursors[0].incarnation for r in results}) == 1
    assert (await page(store, "s", "earliest"))[0] == positions


async def test_a_batch_with_one_oversized_new_event_is_refused_whole(
    make_store: MakeStore,
) -> None:
    store = await make_store(max_event_bytes=400)
    await append(store, "s", [1, 2])
    with pytest.raises(AppendRefused) as refused:
        await append(store, "s", [3, 4], payload="y" * 500)
    assert refused.value.code == "event_too_large"
    info = await store.info("s")
    assert info is not None and (info.tail_cursor.position, info.retained_events) == (2, 2)
    # An oversized duplicate is not stored, so it is not refused.
    result = await append(store, "s", [2], payload="y" * 500)
    assert (result.accepted, result.duplicates) == (0, 1)


@pytest.mark.parametrize(
    ("incarnation", "batch", "code"),
    [
        (INC, [EventIn(revision=1, payload=msgspec.Raw(b"1"))], "invalid_event"),
        (None, [EventIn(revision=1, payload=msgspec.Raw(b"1"), position=1)], "invalid_event"),
        ("bad incarnation!", [], "invalid_incarnation"),
        (
            INC,
            [EventIn(revision=U64_MAX + 1, payload=msgspec.Raw(b"1"), position=1)],
            "invalid_event",
        ),
        (
            INC,
            [EventIn(revision=1, payload=msgspec.Raw(b"1"), position=U64_MAX + 1)],
            "invalid_event",
        ),
    ],
)
async def test_malformed_batches_are_refused_and_write_nothing(
    store: Store, incarnation: str | None, batch: list[EventIn], code: str
) -> None:
    with pytest.raises(AppendRefused) as refused:
        await store.append("s", incarnation, batch)
    assert refused.value.code == code
    assert await store.info("s") is None


async def test_a_superseded_incarnation_is_refused_before_its_batch_is_checked(
    store: Store,
) -> None:
    await append(store, "s", [1])
    await append(store, "s", [1], incarnation="writer-2")
    with pytest.raises(AppendRefused) as refused:
        await store.append("s", INC, events(count=1))
    assert refused.value.code == "incarnation_superseded"


async def test_an_empty_batch_changes_nothing(store: Store) -> None:
    assert (await store.append("s", None, [])).tail_cursor is None
    assert (await store.append("s", INC, [])).tail_cursor is None
    assert await store.info("s") is None
    await append(store, "s", [1, 2])
    result = await store.append("s", "writer-2", [])
    assert (result.accepted, result.took_over, result.tail_cursor) == (0, False, cursor(2))
    await append(store, "s", [1], incarnation="writer-2")
    with pytest.raises(AppendRefused):
        await store.append("s", INC, [])


async def test_positions_and_revisions_are_exact_up_to_2_64_minus_1(store: Store) -> None:
    # 2^53 + 1 collapses onto 2^53 as a double: it must still count as new.
    big = 2**53
    await append(store, "s", [big], revision=U64_MAX)
    result = await append(store, "s", [big + 1, big + 3, U64_MAX], revision=U64_MAX)
    assert result.accepted == 3
    positions, gap, _, _ = await page(store, "s", cursor(big, rev=U64_MAX))
    assert (positions, gap) == ([big + 1], None)
    _, gap, _, _ = await page(store, "s", cursor(big + 1))
    assert gap is not None and gap.detail == GapDetail.WRITER_OVERFLOW
    assert gap.latest_cursor == cursor(U64_MAX, rev=U64_MAX)
    assert (await page(store, "s", cursor(U64_MAX - 1)))[:2] == ([U64_MAX], None)
    snapshot = await store.snapshot("s", big, 10, 1 << 20)
    assert snapshot.head is not None and snapshot.head.tail == U64_MAX
    assert {e.revision for e in snapshot.events} == {U64_MAX}
    assert pos(snapshot.events) == [big + 1, big + 3, U64_MAX]
