"""The bounded session log (PROTOCOL.md sections 2, 3 and 5): appends, retention, accounting.

`SessionTable` has no clock: every test passes `now_ms` explicitly.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livereplay import AppendRefused, Cursor, Limits
from livereplay.protocol import SessionTable, valid_incarnation
from livereplay.protocol.frames import json_events_frame, msgpack_events_frame
from livereplay.protocol.records import BatchIn, EventIn, batch_decoder
from livereplay.protocol.session_log import (
    EVENT_COST,
    HOLE_COST,
    MAX_HOLES,
    MAX_SUPERSEDED,
    PACKED_COST,
    SESSION_COST,
    SUPERSEDED_COST,
    TrimCause,
)

U64_MAX = 2**64 - 1
A = "writer-a"
B = "writer-b"
C = "writer-c"
FIELDS = [
    "session_id",
    "replay_incarnation_id",
    "turn_id",
    "revision",
    "position",
    "cursor",
    "ts",
    "payload",
]


# -- helpers -------------------------------------------------------------------


def ev(
    position: int | None = None,
    *,
    revision: int = 1,
    payload: bytes = b'"x"',
    turn_id: str | None = None,
) -> EventIn:
    return EventIn(
        revision=revision, payload=msgspec.Raw(payload), position=position, turn_id=turn_id
    )


def evs(positions: list[int] | range, **kwargs: Any) -> list[EventIn]:
    return [ev(p, **kwargs) for p in positions]


def retained(table: SessionTable, session_id: str) -> list[int]:
    log = table.get(session_id)
    assert log is not None, f"session {session_id!r} is unknown"
    return [e.position for e in log.events]


def assert_accounting(table: SessionTable) -> None:
    """The table's totals are always the sums over its logs, and each log's own too."""
    logs = list(table.sessions())
    for log in logs:
        assert log.retained_bytes == sum(e.size for e in log.events)
        assert all(e.position <= log.tail for e in log.events)
        assert [e.position for e in log.events] == sorted({e.position for e in log.events})
    assert table.retained_bytes == sum(log.retained_bytes for log in logs)
    assert table.retained_events == sum(len(log.events) for log in logs)


def state(table: SessionTable) -> dict[str, tuple[object, ...]]:
    """Everything an append may change, to show that a refused batch changed nothing."""
    return {
        log.session_id: (
            log.incarnation,
            log.tail,
            log.latest_revision,
            log.last_append_ms,
            [(e.position, e.data) for e in log.events],
            list(log.holes),
        )
        for log in table.sessions()
    } | {"#": (table.retained_bytes, table.retained_events)}


def encoded_size(
    session_id: str, incarnation: str, revision: int, position: int, ts: int, payload: bytes
) -> int:
    """An event's size per section 2, computed independently of the code under test."""
    head = json.dumps(
        {
            "session_id": session_id,
            "replay_incarnation_id": incarnation,
            "turn_id": None,
            "revision": revision,
            "position": position,
            "cursor": f"lashsc2:{incarnation}:{revision}:{position}:{session_id}",
            "ts": ts,
        },
        separators=(",", ":"),
    )
    return len(head[:-1].encode()) + len(b',"payload":') + len(payload) + 1


_made: list[SessionTable] = []


@pytest.fixture(autouse=True)
def _accounting_holds_at_the_end_of_every_test() -> Iterator[None]:
    _made.clear()
    yield
    for table in _made:
        assert_accounting(table)


def new_table(**limits: int) -> SessionTable:
    table = SessionTable(Limits(**limits))
    _made.append(table)
    return table


# -- accepting, duplicates, holes, floor ----------------------------------------


def test_next_positions_are_accepted_in_order() -> None:
    table = new_table()
    result = table.append("s", A, [ev(1, revision=5), ev(2, revision=6)], now_ms=1000)
    assert (result.accepted, result.duplicates) == (2, 0)
    assert result.created and not result.took_over
    assert result.cursors == [Cursor(A, 5, 1, "s"), Cursor(A, 6, 2, "s")]
    assert result.tail_cursor == Cursor(A, 6, 2, "s")
    log = table.get("s")
    assert log is not None
    assert (log.incarnation, log.tail, log.latest_revision) == (A, 2, 6)
    assert retained(table, "s") == [1, 2]
    result = table.append("s", A, [ev(3, revision=6)], now_ms=1001)
    assert (result.accepted, result.created) == (1, False)
    assert retained(table, "s") == [1, 2, 3]


def test_latest_revision_is_the_last_accepted_events_not_the_highest() -> None:
    """Revision is a label; the daemon never orders by it."""
    table = new_table()
    table.append("s", A, [ev(1, revision=9), ev(2, revision=3)], now_ms=0)
    log = table.get("s")
    assert log is not None and log.latest_revision == 3
    assert log.tail_cursor == Cursor(A, 3, 2, "s")


def test_duplicates_are_counted_and_change_nothing() -> None:
    """Retransmission is idempotent: payloads are not compared, the first one stays."""
    table = new_table()
    table.append("s", A, evs([1, 2, 3], payload=b'"first"'), now_ms=0)
    before = state(table)
    result = table.append("s", A, evs([2, 3], payload=b'"second"', revision=7), now_ms=5)
    assert (result.accepted, result.duplicates) == (0, 2)
    assert result.tail_cursor == Cursor(A, 1, 3, "s")
    assert state(table) == before  # not even last_append_ms moved
    log = table.get("s")
    assert log is not None
    assert all(json.loads(e.data)["payload"] == "first" for e in log.events)


def test_duplicates_get_their_own_cursors() -> None:
    """One cursor per event sent, duplicates included (section 6, POST answer)."""
    table = new_table()
    table.append("s", A, evs([1, 2]), now_ms=0)
    result = table.append("s", A, [ev(2, revision=4), ev(3, revision=5)], now_ms=0)
    assert result.cursors == [Cursor(A, 4, 2, "s"), Cursor(A, 5, 3, "s")]
    assert (result.accepted, result.duplicates) == (1, 1)


def test_a_duplicate_of_a_trimmed_position_is_still_a_duplicate() -> None:
    table = new_table(max_events_per_session=2)
    table.append("s", A, evs(range(1, 6)), now_ms=0)
    assert retained(table, "s") == [4, 5]
    before = state(table)
    result = table.append("s", A, evs([1, 2, 3]), now_ms=0)
    assert (result.accepted, result.duplicates) == (0, 3)
    assert state(table) == before


def test_duplicates_within_one_batch() -> None:
    table = new_table()
    result = table.append("s", A, evs([1, 2, 2, 1, 3]), now_ms=0)
    assert (result.accepted, result.duplicates) == (3, 2)
    assert retained(table, "s") == [1, 2, 3]


def test_a_jump_forward_is_accepted_and_leaves_a_hole() -> None:
    table = new_table()
    table.append("s", A, evs([1, 2]), now_ms=0)
    result = table.append("s", A, evs([5, 6, 9]), now_ms=0)
    assert (result.accepted, result.duplicates) == (3, 0)
    log = table.get("s")
    assert log is not None and log.tail == 9
    assert retained(table, "s") == [1, 2, 5, 6, 9]
    assert [p for p in range(1, 11) if log.in_hole(p)] == [3, 4, 7, 8]
    # Positions in the hole can no longer be filled: they are at or below the tail.
    assert table.append("s", A, evs([3]), now_ms=0).duplicates == 1


def test_the_first_position_sets_the_floor_without_a_hole() -> None:
    """A writer re-sending its window to a restarted daemon restores it as it was."""
    table = new_table()
    result = table.append("s", A, evs([40, 41, 42]), now_ms=0)
    assert (result.accepted, result.created) == (3, True)
    log = table.get("s")
    assert log is not None
    assert retained(table, "s") == [40, 41, 42]
    assert not any(log.in_hole(p) for p in range(0, 43))
    assert log.oldest is not None and log.oldest.position == 40
    # Below the floor is not fillable: it counts as already seen (served as trimmed).
    assert table.append("s", A, evs([39]), now_ms=0).duplicates == 1


def test_an_unordered_first_batch_sets_the_floor_at_its_first_event() -> None:
    table = new_table()
    result = table.append("s", A, evs([5, 3, 6]), now_ms=0)
    assert (result.accepted, result.duplicates) == (2, 1)
    assert retained(table, "s") == [5, 6]


# -- incarnations ------------------------------------------------------------


def test_a_new_incarnation_takes_over_and_starts_a_new_log() -> None:
    table = new_table()
    table.append("s", A, evs([1, 2, 3, 4]), now_ms=0)
    result = table.append("s", B, evs([2, 3], revision=8), now_ms=1)
    assert result.took_over and not result.created
    assert (result.accepted, result.duplicates) == (2, 0)
    log = table.get("s")
    assert log is not None
    assert (log.incarnation, log.tail, log.latest_revision) == (B, 3, 8)
    assert retained(table, "s") == [2, 3]  # a new floor, as for a new session
    assert all(json.loads(e.data)["replay_incarnation_id"] == B for e in log.events)
    assert table.retained_events == 2


def test_a_superseded_incarnation_is_refused_and_changes_nothing() -> None:
    table = new_table()
    table.append("s", A, evs([1, 2]), now_ms=0)
    table.append("s", B, evs([1]), now_ms=0)
    table.append("s", C, evs([1]), now_ms=0)
    before = state(table)
    for old in (A, B):
        with pytest.raises(AppendRefused) as info:
            table.append("s", old, evs([3]), now_ms=0)
        assert info.value.code == "incarnation_superseded"
        assert state(table) == before


def test_superseded_incarnations_are_per_session() -> None:
    table = new_table()
    table.append("s", A, evs([1]), now_ms=0)
    table.append("s", B, evs([1]), now_ms=0)
    assert table.append("t", A, evs([1]), now_ms=0).accepted == 1


def test_delete_forgets_superseded_incarnations() -> None:
    table = new_table()
    table.append("s", A, evs([1, 2]), now_ms=0)
    table.append("s", B, evs([1]), now_ms=0)
    assert table.delete("s") is True
    assert table.get("s") is None
    result = table.append("s", A, evs([7]), now_ms=0)
    assert result.created and result.accepted == 1
    assert retained(table, "s") == [7]


def test_expiry_forgets_superseded_incarnations() -> None:
    table = new_table(session_idle_ttl_ms=100)
    table.append("s", A, evs([1]), now_ms=0)
    table.append("s", B, evs([1]), now_ms=0)
    assert table.expire(now_ms=100) == ["s"]
    assert table.append("s", A, evs([1]), now_ms=101).created


def test_a_refused_takeover_supersedes_nothing() -> None:
    """Atomicity: the old incarnation keeps the session when the new one's batch fails."""
    table = new_table(max_event_bytes=300)
    table.append("s", A, evs([1]), now_ms=0)
    before = state(table)
    with pytest.raises(AppendRefused) as info:
        table.append("s", B, [ev(1), ev(2, payload=b'"' + b"x" * 400 + b'"')], now_ms=0)
    assert info.value.code == "event_too_large"
    assert state(table) == before
    assert table.append("s", A, evs([2]), now_ms=0).accepted == 1


def test_rejoining_the_current_incarnation_is_not_a_takeover() -> None:
    table = new_table()
    table.append("s", A, evs([1]), now_ms=0)
    result = table.append("s", A, evs([2]), now_ms=0)
    assert not result.took_over and not result.created


# -- daemon-assigned positions -------------------------------------------------


def test_without_incarnation_the_daemon_assigns_positions() -> None:
    table = new_table()
    first = table.append("s", None, [ev(), ev()], now_ms=0)
    inc = first.tail_cursor.incarnation if first.tail_cursor else ""
    assert valid_incarnation(inc)
    assert [c.position for c in first.cursors] == [1, 2]
    assert all(c.incarnation == inc for c in first.cursors)
    assert first.created and (first.accepted, first.duplicates) == (2, 0)
    second = table.append("s", None, [ev()], now_ms=0)
    assert second.cursors == [Cursor(inc, 1, 3, "s")]
    assert retained(table, "s") == [1, 2, 3]


def test_each_new_daemon_assigned_session_gets_its_own_incarnation() -> None:
    table = new_table()
    incs = {table.append(s, None, [ev()], now_ms=0).cursors[0].incarnation for s in "abcd"}
    assert len(incs) == 4


def test_daemon_assigned_positions_continue_a_writers_incarnation() -> None:
    table = new_table()
    table.append("s", A, evs([10, 11]), now_ms=0)
    result = table.append("s", None, [ev(), ev()], now_ms=0)
    assert result.cursors == [Cursor(A, 1, 12, "s"), Cursor(A, 1, 13, "s")]
    assert not result.took_over
    # And the writer goes on after them: its next position is past the daemon's.
    assert table.append("s", A, evs([13, 14]), now_ms=0).accepted == 1


# -- refused batches ---------------------------------------------------------


@pytest.mark.parametrize(
    ("incarnation", "events", "code"),
    [
        (A, [ev(1), ev()], "invalid_event"),
        (A, [ev()], "invalid_event"),
        (None, [ev(), ev(2)], "invalid_event"),
        (None, [ev(1)], "invalid_event"),
        ("", [ev(1)], "invalid_incarnation"),
        ("a:b", [ev(1)], "invalid_incarnation"),
        ("a.b", [ev(1)], "invalid_incarnation"),
        ("x" * 65, [ev(1)], "invalid_incarnation"),
        ("é", [ev(1)], "invalid_incarnation"),
        (A, [ev(1, revision=U64_MAX + 1)], "invalid_event"),
        (A, [ev(U64_MAX + 1)], "invalid_event"),
        (None, [ev(revision=U64_MAX + 1)], "invalid_event"),
        (A, [ev(1, revision=-1)], "invalid_event"),
        (A, [ev(0)], "invalid_event"),
        (A, [ev(-3)], "invalid_event"),
    ],
)
def test_invalid_batches_are_refused_whole(
    incarnation: str | None,
    events: list[EventIn],
    code: str,
) -> None:
    table = new_table()
    table.append("s", A, evs([1, 2]), now_ms=0)
    before = state(table)
    with pytest.raises(AppendRefused) as info:
        table.append("s", incarnation, events, now_ms=10)
    assert info.value.code == code
    assert state(table) == before
    # Nor does a refused batch create a session.
    with pytest.raises(AppendRefused):
        table.append("new", incarnation, events, now_ms=10)
    assert table.get("new") is None


def test_u64_max_is_a_valid_position_and_revision() -> None:
    table = new_table()
    result = table.append("s", A, [ev(U64_MAX, revision=U64_MAX)], now_ms=0)
    assert result.tail_cursor == Cursor(A, U64_MAX, U64_MAX, "s")


def test_an_event_too_large_refuses_the_batch_and_writes_nothing() -> None:
    payload = b'"' + b"y" * 100 + b'"'
    size = encoded_size("s", A, 1, 3, 0, payload)
    table = new_table(max_event_bytes=size)
    table.append("s", A, evs([1, 2]), now_ms=0)
    before = state(table)
    big = b'"' + b"y" * 101 + b'"'
    with pytest.raises(AppendRefused) as info:
        table.append("s", A, [ev(3), ev(4, payload=big)], now_ms=0)
    assert info.value.code == "event_too_large"
    assert state(table) == before
    with pytest.raises(AppendRefused):
        table.append("new", None, [ev(payload=big * 3)], now_ms=0)
    assert table.get("new") is None
    # Exactly the limit is fine.
    assert table.append("s", A, [ev(3, payload=payload)], now_ms=0).accepted == 1


def test_an_empty_batch_does_nothing() -> None:
    table = new_table()
    for inc in (A, None):
        result = table.append("new", inc, [], now_ms=0)
        assert (result.accepted, result.duplicates, result.cursors) == (0, 0, [])
        assert result.tail_cursor is None and not result.created
        assert table.get("new") is None and len(table) == 0
    table.append("s", A, evs([1, 2]), now_ms=0)
    before = state(table)
    for inc in (A, B, None):
        result = table.append("s", inc, [], now_ms=50)
        assert result.tail_cursor == Cursor(A, 1, 2, "s")
        assert not result.took_over
    assert state(table) == before  # B did not take over with nothing


# -- retention ---------------------------------------------------------------


def test_retention_by_event_count_drops_the_oldest() -> None:
    table = new_table(max_events_per_session=3)
    table.append("s", A, evs(range(1, 6)), now_ms=0)
    assert retained(table, "s") == [3, 4, 5]
    assert table.trimmed[TrimCause.EVENTS] == 2
    table.append("s", A, evs([6]), now_ms=0)
    assert retained(table, "s") == [4, 5, 6]
    log = table.get("s")
    assert log is not None and log.tail == 6


def test_retention_by_bytes_counts_each_events_json_encoding() -> None:
    one = encoded_size("s", A, 1, 1, 0, b'"x"')  # single-digit positions: all the same size
    table = new_table(max_bytes_per_session=3 * one + one // 2)
    table.append("s", A, evs(range(1, 6)), now_ms=0)
    assert retained(table, "s") == [3, 4, 5]
    log = table.get("s")
    assert log is not None and log.retained_bytes == 3 * one
    assert table.trimmed[TrimCause.BYTES] == 2


def test_an_event_larger_than_the_session_budget_is_accepted_then_dropped() -> None:
    """It still advances the tail: readers will get a gap, the writer no error."""
    table = new_table(max_bytes_per_session=200)
    table.append("s", A, evs([1]), now_ms=0)
    result = table.append("s", A, [ev(2, payload=b'"' + b"z" * 300 + b'"')], now_ms=0)
    assert result.accepted == 1
    log = table.get("s")
    assert log is not None and log.tail == 2 and not log.events


def test_retention_by_age_with_an_explicit_clock() -> None:
    table = new_table(max_age_ms=100)
    table.append("s", A, evs([1, 2]), now_ms=1000)
    table.append("s", A, evs([3]), now_ms=1060)
    assert table.trim("s", now_ms=1099) == 0
    assert retained(table, "s") == [1, 2, 3]
    assert table.trim("s", now_ms=1101) == 2
    assert retained(table, "s") == [3]
    assert table.trim("s", now_ms=1161) == 1
    assert retained(table, "s") == []
    assert table.trimmed[TrimCause.AGE] == 3
    log = table.get("s")
    assert log is not None and (log.tail, log.latest_revision, log.incarnation) == (3, 1, A)


def test_age_is_applied_when_the_session_is_appended_to() -> None:
    table = new_table(max_age_ms=100)
    table.append("s", A, evs([1]), now_ms=0)
    table.append("s", A, evs([2]), now_ms=500)
    assert retained(table, "s") == [2]


def test_trim_of_an_unknown_session_is_none() -> None:
    assert new_table().trim("nope", now_ms=0) is None


def test_trimming_never_changes_the_tail() -> None:
    """Metadata outlives events, so a cursor at the tail always resumes without a gap."""
    table = new_table(max_events_per_session=1, max_age_ms=10)
    table.append("s", A, [ev(1, revision=4), ev(2, revision=5)], now_ms=0)
    log = table.get("s")
    assert log is not None
    tail_cursor = log.tail_cursor
    table.trim("s", now_ms=1000)
    assert not log.events and log.tail_cursor == tail_cursor
    assert log.oldest is None
    assert table.append("s", A, evs([3]), now_ms=1000).accepted == 1


def held(sessions: int, events: int, one: int) -> int:
    """What `sessions` one-letter sessions of incarnation A holding `events` events of
    `one` encoded bytes each cost the budget."""
    return sessions * (SESSION_COST + 1 + len(A)) + events * (EVENT_COST + one)


def test_the_budget_trims_the_least_recently_appended_sessions_first() -> None:
    one = encoded_size("a", A, 1, 1, 0, b'"x"')  # one-letter ids, single digits: equal sizes
    budget = held(3, 6, one)
    table = new_table(memory_budget_bytes=budget)
    for sid in "abc":
        table.append(sid, A, evs([1, 2]), now_ms=0)
    assert table.retained_bytes == 6 * one and table.cost == budget
    table.append("c", A, evs([3]), now_ms=0)  # one over: a's oldest goes
    assert (retained(table, "a"), retained(table, "b"), retained(table, "c")) == (
        [2],
        [1, 2],
        [1, 2, 3],
    )
    table.append("a", A, evs([3]), now_ms=0)  # a is now the most recent: b pays
    assert (retained(table, "a"), retained(table, "b"), retained(table, "c")) == (
        [2, 3],
        [2],
        [1, 2, 3],
    )
    table.append("b", A, evs([3, 4, 5, 6]), now_ms=0)  # all of c, then a's oldest
    assert table.retained_bytes == 6 * one and table.cost == budget
    assert table.trimmed[TrimCause.BUDGET] == 6
    assert (retained(table, "c"), retained(table, "a"), retained(table, "b")) == (
        [],
        [3],
        [2, 3, 4, 5, 6],
    )
    for sid in "abc":  # the tails stay
        log = table.get(sid)
        assert log is not None and log.tail in (3, 6)


def test_duplicates_do_not_make_a_session_recent_for_the_budget() -> None:
    one = encoded_size("a", A, 1, 1, 0, b'"x"')
    table = new_table(memory_budget_bytes=held(2, 4, one))
    table.append("a", A, evs([1, 2]), now_ms=0)
    table.append("b", A, evs([1, 2]), now_ms=0)
    table.append("a", A, evs([1, 2]), now_ms=0)  # only duplicates
    table.append("b", A, evs([3]), now_ms=0)
    assert retained(table, "a") == [2]
    assert retained(table, "b") == [1, 2, 3]


def test_the_budget_may_trim_the_session_just_appended() -> None:
    one = encoded_size("a", A, 1, 1, 0, b'"x"')
    table = new_table(memory_budget_bytes=held(1, 2, one))
    table.append("a", A, evs([1, 2, 3]), now_ms=0)
    assert retained(table, "a") == [2, 3]
    log = table.get("a")
    assert log is not None and log.tail == 3


def test_msgpack_copies_count_against_the_budget_once_made() -> None:
    one = encoded_size("a", A, 1, 1, 0, b'"x"')
    roomy = new_table(memory_budget_bytes=held(1, 3, one) + 3 * (PACKED_COST + 400))
    roomy.append("a", A, evs([1, 2, 3]), now_ms=0)
    before = roomy.cost
    log = roomy.get("a")
    assert log is not None
    packed = [e.packed for e in log.events]  # a msgpack reader read them all
    assert roomy.cost == before + sum(PACKED_COST + len(p) for p in packed)
    assert [e.packed for e in log.events] == packed  # made once, kept
    assert roomy.cost == before + sum(PACKED_COST + len(p) for p in packed)


def test_msgpack_copies_beyond_the_budget_are_served_but_not_kept() -> None:
    one = encoded_size("a", A, 1, 1, 0, b'"x"')
    table = new_table(memory_budget_bytes=held(1, 3, one))  # no room for any copy
    table.append("a", A, evs([1, 2, 3]), now_ms=0)
    before = table.cost
    log = table.get("a")
    assert log is not None
    packed = [e.packed for e in log.events]
    assert all(msgspec.msgpack.decode(p)["position"] == i for i, p in enumerate(packed, 1))
    assert table.cost == before <= held(1, 3, one)  # the events stay; no copy is kept
    table.expire(now_ms=1)
    assert retained(table, "a") == [1, 2, 3]


def test_superseded_incarnations_and_holes_count_and_are_bounded() -> None:
    table = new_table()
    table.append("s", "w-00", evs([1]), now_ms=0)
    base = table.cost
    for i in range(1, 100):
        table.append("s", f"w-{i:02d}", evs([1]), now_ms=0)
    assert table.cost == base + MAX_SUPERSEDED * SUPERSEDED_COST  # 64 remembered
    with pytest.raises(AppendRefused):
        table.append("s", "w-98", evs([2]), now_ms=0)
    with_holes = table.cost
    table.append("s", "w-99", evs(range(3, 600, 2)), now_ms=0)  # a hole before each
    log = table.get("s")
    assert log is not None and len(log.holes) == MAX_HOLES
    events = len(log.events) - 1
    assert table.cost == with_holes + MAX_HOLES * HOLE_COST + events * EVENT_COST + sum(
        e.size for e in list(log.events)[1:]
    )
    assert table.delete("s") and table.cost == 0


def test_sessions_alone_over_the_budget_forget_the_idlest_never_the_one_appended() -> None:
    one = encoded_size("a", A, 1, 1, 0, b'"x"')
    table = new_table(memory_budget_bytes=held(2, 1, one))
    table.append("a", A, evs([1]), now_ms=0)
    table.append("b", A, evs([1]), now_ms=0)  # a's event goes for the budget
    assert retained(table, "a") == [] and table.evicted == []
    table.append("c", A, evs([1]), now_ms=0)  # b's event, then a itself
    assert table.evicted == ["a"] and table.sessions_evicted == 1
    assert table.get("a") is None and retained(table, "c") == [1]
    assert table.cost <= held(2, 1, one)


def test_what_is_let_go_costs_nothing_any_more() -> None:
    table = new_table(max_events_per_session=2)
    table.append("a", A, evs([1, 2, 3, 4]), now_ms=0)
    table.append("a", B, evs([1, 2]), now_ms=0)  # a takeover
    table.append("b", A, evs([5, 7]), now_ms=0)
    table.expire(now_ms=10**12)  # idle: forgotten
    assert len(table) == 0 and table.cost == 0


def test_expire_forgets_idle_sessions_and_ages_the_rest() -> None:
    table = new_table(session_idle_ttl_ms=1000, max_age_ms=300)
    table.append("old", A, evs([1]), now_ms=0)
    table.append("new", A, evs([1]), now_ms=500)
    table.append("new", A, evs([2]), now_ms=900)
    assert table.expire(now_ms=999) == []
    assert table.get("old") is not None
    assert retained(table, "old") == []  # aged out, metadata kept
    assert retained(table, "new") == [2]
    assert table.expire(now_ms=1000) == ["old"]
    assert table.get("old") is None and table.get("new") is not None
    assert table.expire(now_ms=1900) == ["new"]
    assert len(table) == 0 and table.retained_bytes == 0 and table.retained_events == 0


def test_delete() -> None:
    table = new_table()
    table.append("s", A, evs([1, 2]), now_ms=0)
    table.append("t", A, evs([1]), now_ms=0)
    assert table.delete("s") is True
    assert table.delete("s") is False
    assert table.delete("never") is False
    assert [log.session_id for log in table.sessions()] == ["t"]
    assert table.retained_events == 1


def test_sessions_are_listed_in_id_order_for_paging() -> None:
    table = new_table()
    for sid in ["b", "a:1", "c", "a"]:
        table.append(sid, None, [ev()], now_ms=0)
    assert [log.session_id for log in table.sessions()] == ["a", "a:1", "b", "c"]
    assert [log.session_id for log in table.sessions(after="a:1")] == ["b", "c"]


def test_holes_are_forgotten_only_once_the_event_after_them_is_trimmed() -> None:
    """A reader at 2 has missed only the hole 3..4 while 5 is retained."""
    table = new_table(max_events_per_session=3)
    table.append("s", A, evs([1, 2, 5, 6]), now_ms=0)
    log = table.get("s")
    assert log is not None
    assert retained(table, "s") == [2, 5, 6]
    assert log.in_hole(3)
    table.append("s", A, evs([7]), now_ms=0)  # drops 2: the hole is still the next thing
    assert retained(table, "s") == [5, 6, 7]
    assert log.in_hole(3) and log.in_hole(4)
    table.append("s", A, evs([8]), now_ms=0)  # drops 5: now the reader lost real events
    assert not log.in_hole(3) and not log.in_hole(4)


# -- stored events and frames -------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        b'{"any": "JSON value"}',
        b'{ "b" :1 , "a":[1.0e+00, -0.0, 1E2] }',
        b'"\\u00e9\\ud83d\\ude00"',
        b'"\xc3\xa9"',
        b"123456789012345678901234567890",
        b"null",
        b"[]",
        b"  true",
    ],
)
def test_the_stored_event_is_the_protocol_shape_with_the_payload_byte_for_byte(
    payload: bytes,
) -> None:
    table = new_table()
    result = table.append("s:1", A, [ev(7, revision=3, payload=payload, turn_id="t9")], 1234)
    log = table.get("s:1")
    assert log is not None
    (stored,) = log.events
    decoded = json.loads(stored.data)
    assert list(decoded) == FIELDS
    assert decoded | {"payload": None} == {
        "session_id": "s:1",
        "replay_incarnation_id": A,
        "turn_id": "t9",
        "revision": 3,
        "position": 7,
        "cursor": str(result.cursors[0]),
        "ts": 1234,
        "payload": None,
    }
    assert decoded["cursor"] == f"lashsc2:{A}:3:7:s:1"
    assert stored.data.endswith(b',"payload":' + payload + b"}")
    assert stored.size == len(stored.data)
    assert (stored.position, stored.revision, stored.ts_ms) == (7, 3, 1234)


def test_a_null_turn_id_is_stored_as_null() -> None:
    table = new_table()
    table.append("s", None, [ev()], now_ms=5)
    log = table.get("s")
    assert log is not None
    assert json.loads(log.events[0].data)["turn_id"] is None
    assert log.events[0].size == encoded_size("s", log.incarnation, 1, 1, 5, b'"x"')


def test_the_msgpack_form_is_the_same_object() -> None:
    table = new_table()
    table.append("s", A, [ev(1, payload=b'{"k": [1, 2.5, "v", null, true]}')], now_ms=9)
    log = table.get("s")
    assert log is not None
    stored = log.events[0]
    assert msgspec.msgpack.decode(stored.packed) == json.loads(stored.data)
    assert stored.packed is stored.packed  # made once and kept


def test_a_payload_from_a_decoded_batch_passes_through_unchanged() -> None:
    body = b'{"incarnation":"w","events":[{"revision":1,"position":1,"payload":{"z" : 1,"a":2}}]}'
    batch = batch_decoder.decode(body)
    table = new_table()
    table.append("s", batch.incarnation, batch.events, now_ms=0)
    log = table.get("s")
    assert log is not None
    assert log.events[0].data.endswith(b'"payload":{"z" : 1,"a":2}}')


@pytest.mark.parametrize(
    "body",
    [
        b'{"events":[{"revision":1,"payload":1,"extra":1}]}',
        b'{"events":[],"extra":1}',
        b'{"events":[{"revision":-1,"payload":1}]}',
        b'{"events":[{"revision":1,"position":0,"payload":1}]}',
        b'{"events":[{"position":1,"payload":1}]}',
        b'{"events":[{"revision":1}]}',
        b'{"events":[{"revision":1,"payload":}]}',
    ],
)
def test_the_batch_decoder_refuses_bad_shapes(body: bytes) -> None:
    with pytest.raises((msgspec.ValidationError, msgspec.DecodeError)):
        batch_decoder.decode(body)


def test_the_batch_decoder_takes_u64_max() -> None:
    body = b'{"events":[{"revision":%d,"position":%d,"payload":0}]}' % (U64_MAX, U64_MAX)
    (event,) = batch_decoder.decode(body).events
    assert event.revision == event.position == U64_MAX
    assert isinstance(batch_decoder.decode(b'{"events":[]}'), BatchIn)


def test_a_json_events_frame_is_the_stored_events_concatenated() -> None:
    table = new_table()
    table.append("s", A, [ev(1, payload=b'{"a":1}'), ev(2, payload=b"[2]")], now_ms=0)
    log = table.get("s")
    assert log is not None
    frame = json_events_frame([e.data for e in log.events])
    decoded = json.loads(frame)
    assert list(decoded) == ["type", "events"]
    assert decoded["type"] == "events"
    assert decoded["events"] == [json.loads(e.data) for e in log.events]
    assert log.events[0].data in frame and log.events[1].data in frame


@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 65535, 65536])
def test_a_msgpack_events_frame_has_the_right_array_header(n: int) -> None:
    """fixarray below 16, array16 below 2**16, array32 above."""
    items = [msgspec.msgpack.encode(i % 100) for i in range(n)]
    decoded = msgspec.msgpack.decode(msgpack_events_frame(items))
    assert decoded == {"type": "events", "events": [i % 100 for i in range(n)]}


def test_a_msgpack_events_frame_of_stored_events() -> None:
    table = new_table()
    table.append("s", A, [ev(p, payload=b'{"p":%d}' % p) for p in range(1, 20)], now_ms=0)
    log = table.get("s")
    assert log is not None
    frame = msgpack_events_frame([e.packed for e in log.events])
    assert msgspec.msgpack.decode(frame) == json.loads(
        json_events_frame([e.data for e in log.events])
    )


# -- accounting as an invariant ------------------------------------------------

operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("append"),
            st.sampled_from("ab"),
            st.sampled_from([A, B, None]),
            st.lists(st.integers(1, 12), max_size=5),
            st.integers(0, 60),
        ),
        st.tuples(st.just("trim"), st.sampled_from("ab"), st.integers(0, 60)),
        st.tuples(st.just("expire"), st.integers(0, 60)),
        st.tuples(st.just("delete"), st.sampled_from("ab")),
    ),
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(operations)
def test_table_totals_always_equal_the_sum_over_logs(ops: list[tuple[Any, ...]]) -> None:
    one = encoded_size("a", A, 1, 1, 0, b'"x"')
    table = SessionTable(
        Limits(
            max_events_per_session=4,
            max_bytes_per_session=3 * one,
            max_age_ms=100,
            memory_budget_bytes=5 * one,
            session_idle_ttl_ms=200,
        )
    )
    now = 0
    for op in ops:
        if op[0] == "append":
            _, sid, inc, positions, dt = op
            now += dt
            events = [ev() for _ in positions] if inc is None else evs(positions)
            try:
                table.append(sid, inc, events, now)
            except AppendRefused as exc:
                assert exc.code == "incarnation_superseded"
        elif op[0] == "trim":
            now += op[2]
            table.trim(op[1], now)
        elif op[0] == "expire":
            now += op[1]
            table.expire(now)
        else:
            table.delete(op[1])
        assert_accounting(table)
        assert table.retained_bytes <= 5 * one
        for log in table.sessions():
            assert len(log.events) <= 4 and log.retained_bytes <= 3 * one
