"""A writer re-sending its window to a backend that lost it (rule 4, revision 1.1).

Readers ahead of the tail wait while the restore is under way, in as many batches as
it takes, instead of getting `ahead_of_tail`; once the tail reaches them they read on.
The same for every backend.
"""

from __future__ import annotations

from livereplay import GapDetail
from livereplay.protocol import ReadProgress
from livereplay.protocol.rules import CaughtUp, Events, Gap, Hello, MustWait, read_page
from livereplay_server.store import Store
from tests.conformance.conftest import MakeStore
from tests.conformance.helpers import INC, FakeClock, append, cursor, events, follow, pos


async def test_a_reader_ahead_of_the_tail_waits_while_the_window_is_restored(
    store: Store, clock: FakeClock
) -> None:
    # The restore's first batch: the session comes back from its oldest retained event.
    first = await store.append("s", INC, events(range(11, 21)), restore_to=40)
    assert first.accepted == 10
    sub = ReadProgress("s", cursor(30))
    out = await follow(store, sub, clock)
    assert [type(o) for o in out] == [Hello]  # no gap, no caught_up: waiting
    assert sub.wait_until_ms > clock()
    snapshot = await store.snapshot("s", 30, 10, 1 << 20)
    try:
        read_page(snapshot, cursor(30), "s", now_ms=clock())
    except MustWait as wait:
        assert wait.until_ms == sub.wait_until_ms
    else:
        raise AssertionError("an HTTP page read during the restore must wait (503)")

    await store.append("s", INC, events(range(21, 41)), restore_to=40)
    out = await follow(store, sub, clock)
    assert [type(o) for o in out] == [Events, CaughtUp]
    assert pos(out[0].events) == list(range(31, 41))  # type: ignore[union-attr]
    head = (await store.snapshot("s", 40, 1, 1 << 20)).head
    assert head is not None and head.restoring_to == 0  # the restore is over


async def test_a_restore_that_stops_short_gives_ahead_of_tail_after_its_deadline(
    make_store: MakeStore, clock: FakeClock
) -> None:
    store = await make_store(restore_wait_ms=100)
    await store.append("s", INC, events(range(1, 6)), restore_to=9)
    clock.advance(99)
    assert [type(o) for o in await follow(store, ReadProgress("s", cursor(8)), clock)] == [Hello]
    clock.advance(1)  # the deadline
    out = await follow(store, ReadProgress("s", cursor(8)), clock)
    gaps = [o for o in out if isinstance(o, Gap)]
    assert [g.detail for g in gaps] == [GapDetail.AHEAD_OF_TAIL]


async def test_appends_answer_how_many_positions_they_skipped(store: Store) -> None:
    first = await append(store, "s", [1, 2])
    assert (first.holes, first.skipped) == (0, 0)
    second = await append(store, "s", [6, 7])
    assert (second.holes, second.skipped) == (3, 3)
    third = await append(store, "s", [7, 8, 10])
    assert (third.holes, third.skipped) == (1, 4)
    # The running total is there in every answer, a duplicate's included: a writer that
    # lost the answer that reported a hole learns of it from the next.
    again = await append(store, "s", [10])
    assert (again.accepted, again.holes, again.skipped) == (0, 0, 4)
    empty = await append(store, "s", [])  # an empty batch answers with it too
    assert (empty.accepted, empty.holes, empty.skipped) == (0, 0, 4)
    # A new session takes its first position as the floor: nothing is skipped.
    assert (await append(store, "t", [5])).skipped == 0
    # A takeover begins a new log, and its count.
    taken = await append(store, "s", [20], incarnation="writer-2")
    assert (taken.took_over, taken.skipped) == (True, 0)
    assert (await append(store, "s", [25], incarnation="writer-2")).skipped == 4
