"""The read-rule table (PROTOCOL.md section 4) through `check`, `ReadProgress` and `read_page`.

Rule 1 (malformed / wrong session) is parsing: see test_cursor.py. Rules 2 to 6 are here.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from livereplay import Cursor, Limits
from livereplay.protocol import ReadProgress, SessionTable, Snapshot
from livereplay.protocol.records import EventIn
from livereplay.protocol.rules import (
    CaughtUp,
    Events,
    Gap,
    GapDetail,
    GapReason,
    Head,
    Hello,
    Output,
    check,
    read_page,
)

U64_MAX = 2**64 - 1
A = "writer-a"
B = "writer-b"
S = "s-1"
BIG = 1 << 20


# -- helpers -------------------------------------------------------------------


def append(
    table: SessionTable,
    positions: list[int] | range,
    *,
    inc: str = A,
    rev: int = 1,
    now: int = 0,
    sid: str = S,
    payload: bytes = b'"x"',
) -> None:
    events = [EventIn(rev, msgspec.Raw(payload), p) for p in positions]
    table.append(sid, inc, events, now)


def cur(position: int, *, inc: str = A, rev: int = 1, sid: str = S) -> Cursor:
    return Cursor(inc, rev, position, sid)


def snap(
    table: SessionTable, after: int, *, limit: int = 100, max_bytes: int = BIG, sid: str = S
) -> Snapshot:
    return Snapshot.of(table.get(sid), after, limit, max_bytes)


def head(table: SessionTable, sid: str = S) -> Head:
    log = table.get(sid)
    assert log is not None
    return Head.of(log)


def feed(
    sub: ReadProgress,
    table: SessionTable,
    now: int = 0,
    *,
    limit: int = 100,
    max_bytes: int = BIG,
) -> list[Output]:
    """One read as the reader socket does it: a snapshot after the subscription's position."""
    return sub.feed(snap(table, sub.after(), limit=limit, max_bytes=max_bytes), now)


def follow(sub: ReadProgress, table: SessionTable, now: int = 0, **kw: int) -> list[Output]:
    """Feed until the subscription would wait for a change."""
    out = feed(sub, table, now, **kw)
    while sub.more:
        out += feed(sub, table, now, **kw)
    return out


def describe(outputs: list[Output]) -> list[Any]:
    """A compact, readable form of a subscription's outputs."""
    shown: list[Any] = []
    for o in outputs:
        if isinstance(o, Hello):
            shown.append("hello")
        elif isinstance(o, Events):
            shown.append([e.position for e in o.events])
        elif isinstance(o, Gap):
            shown.append(f"gap {o.reason}/{o.detail}")
        elif isinstance(o, CaughtUp):
            shown.append("caught_up")
    return shown


def gaps(outputs: list[Output]) -> list[Gap]:
    return [o for o in outputs if isinstance(o, Gap)]


def new_table(**limits: int) -> SessionTable:
    return SessionTable(Limits(**limits))


# -- check: rules 3 to 5 ---------------------------------------------------------


def test_check_serves_when_the_next_event_is_retained() -> None:
    table = new_table()
    append(table, [1, 2, 3])
    for p in (0, 1, 2, 3):
        assert check(head(table), cur(p), snap(table, p), reading=False) is None


def test_rule_3_another_incarnation_is_unavailable() -> None:
    table = new_table()
    append(table, [1, 2, 3], inc=A, rev=4)
    append(table, [1, 2], inc=B, rev=9)
    old = cur(3, inc=A, rev=4)
    gap = check(head(table), old, snap(table, 3), reading=True)
    assert gap == Gap(
        S,
        str(old),
        Cursor(B, 9, 2, S),
        9,
        GapReason.UNAVAILABLE,
        GapDetail.INCARNATION_CHANGED,
        Cursor(B, 9, 1, S),
    )


@pytest.mark.parametrize("p", [0, 1, 2, 3, 50])
def test_rule_3_comes_before_rules_4_and_5(p: int) -> None:
    table = new_table(max_events_per_session=1)
    append(table, [1, 2, 3], inc=B)
    gap = check(head(table), cur(p, inc=A), snap(table, p), reading=False)
    assert gap is not None and gap.detail is GapDetail.INCARNATION_CHANGED


def test_rule_4_a_position_past_the_tail_is_unavailable() -> None:
    table = new_table()
    append(table, [1, 2, 3], rev=5)
    for p in (4, U64_MAX):
        gap = check(head(table), cur(p), snap(table, p), reading=False)
        assert gap is not None
        assert (gap.reason, gap.detail) == (GapReason.UNAVAILABLE, GapDetail.AHEAD_OF_TAIL)
        assert gap.latest_cursor == cur(3, rev=5) and gap.latest_revision == 5


def test_rule_5_trimmed_history_is_a_retention_gap_for_a_new_reader() -> None:
    table = new_table(max_events_per_session=2)
    append(table, [1, 2, 3, 4, 5], rev=2)
    for p in (0, 1, 2):
        gap = check(head(table), cur(p), snap(table, p), reading=False)
        assert gap is not None
        assert (gap.reason, gap.detail) == (GapReason.TRIMMED, GapDetail.RETENTION)
        assert gap.earliest_cursor == cur(4, rev=2)
        assert gap.latest_cursor == cur(5, rev=2)
        assert gap.requested_cursor == str(cur(p))
    assert check(head(table), cur(3), snap(table, 3), reading=False) is None


def test_rule_5_trimmed_history_is_lagged_for_a_reader_already_reading() -> None:
    table = new_table(max_events_per_session=2)
    append(table, [1, 2, 3, 4, 5])
    gap = check(head(table), cur(1), snap(table, 1), reading=True)
    assert gap is not None and (gap.reason, gap.detail) == (GapReason.TRIMMED, GapDetail.LAGGED)


@pytest.mark.parametrize("reading", [False, True])
def test_rule_5_a_hole_is_writer_overflow(reading: bool) -> None:
    table = new_table()
    append(table, [1, 2, 6, 7])
    for p in (2, 3, 4):
        gap = check(head(table), cur(p), snap(table, p), reading=reading)
        assert gap is not None
        assert (gap.reason, gap.detail) == (GapReason.TRIMMED, GapDetail.WRITER_OVERFLOW)
        assert gap.earliest_cursor == cur(1)
    assert check(head(table), cur(5), snap(table, 5), reading=reading) is None


def test_rule_5_a_hole_after_trimmed_events_is_still_writer_overflow() -> None:
    """The reader at 2 lost nothing real: 3..5 were never received and 6 is retained."""
    table = new_table(max_events_per_session=2)
    append(table, [1, 2, 6, 7])
    assert [e.position for e in snap(table, 0).events] == [6, 7]
    gap = check(head(table), cur(2), snap(table, 2), reading=False)
    assert gap is not None and gap.detail is GapDetail.WRITER_OVERFLOW
    gap = check(head(table), cur(1), snap(table, 1), reading=False)
    assert gap is not None and gap.detail is GapDetail.RETENTION


def test_rule_5_below_the_floor_counts_as_trimmed() -> None:
    table = new_table()
    append(table, [10, 11])
    gap = check(head(table), cur(0), snap(table, 0), reading=False)
    assert gap is not None and gap.detail is GapDetail.RETENTION
    assert check(head(table), cur(9), snap(table, 9), reading=False) is None


def test_rule_6_a_cursor_at_the_tail_never_gaps_even_with_nothing_retained() -> None:
    """Metadata outlives events: an empty result means caught up, not missing history."""
    table = new_table(max_age_ms=10)
    append(table, [1, 2, 3], now=0)
    table.trim(S, now_ms=100)
    assert snap(table, 0).events == []
    assert check(head(table), cur(3), snap(table, 3), reading=True) is None
    gap = check(head(table), cur(2), snap(table, 2), reading=False)
    assert gap is not None and gap.detail is GapDetail.RETENTION
    assert gap.earliest_cursor is None


def test_the_cursor_revision_plays_no_part_in_the_rules() -> None:
    table = new_table()
    append(table, [1, 2], rev=7)
    assert check(head(table), cur(1, rev=999), snap(table, 1), reading=False) is None


# -- ReadProgress: start and rule 2 ------------------------------------------------


def test_hello_comes_first_with_the_start_and_the_head() -> None:
    table = new_table()
    append(table, [1, 2, 3], rev=4)
    sub = ReadProgress(S, cur(1))
    out = follow(sub, table)
    assert out[0] == Hello(cur(1), cur(3, rev=4))
    assert describe(out) == ["hello", [2, 3], "caught_up"]
    assert out[-1] == CaughtUp(cur(3, rev=4))


def test_words_resolve_to_cursors_in_hello() -> None:
    table = new_table(max_events_per_session=3)
    append(table, [1, 2, 3, 4, 5], rev=4)
    earliest = ReadProgress(S, "earliest")
    out = follow(earliest, table)
    assert out[0] == Hello(cur(2, rev=4), cur(5, rev=4))
    assert describe(out) == ["hello", [3, 4, 5], "caught_up"]
    latest = ReadProgress(S, "latest")
    out = follow(latest, table)
    assert out[0] == Hello(cur(5, rev=4), cur(5, rev=4))
    assert describe(out) == ["hello", "caught_up"]


def test_after_says_where_to_read() -> None:
    assert ReadProgress(S, cur(7)).after() == 7
    assert ReadProgress(S, "earliest").after() == 0
    assert ReadProgress(S, "latest").after() == U64_MAX


def test_earliest_with_nothing_retained_starts_at_the_tail() -> None:
    table = new_table(max_age_ms=10)
    append(table, [1, 2], now=0)
    table.trim(S, now_ms=50)
    sub = ReadProgress(S, "earliest")
    assert describe(follow(sub, table)) == ["hello", "caught_up"]
    append(table, [3], now=60)
    assert describe(follow(sub, table)) == [[3]]


def test_latest_only_gets_what_is_appended_from_now_on() -> None:
    table = new_table()
    append(table, [1, 2, 3])
    sub = ReadProgress(S, "latest")
    assert describe(follow(sub, table)) == ["hello", "caught_up"]
    append(table, [4, 5])
    assert describe(follow(sub, table)) == [[4, 5]]


@pytest.mark.parametrize("start", ["earliest", "latest"])
def test_a_word_on_an_unknown_session_waits_then_reads_all_of_it(start: str) -> None:
    """Everything a session that does not exist yet will get is appended from now on."""
    table = new_table()
    sub = ReadProgress(S, start)  # type: ignore[arg-type]
    out = follow(sub, table)
    assert out == [Hello(None, None), CaughtUp(None)]
    assert follow(sub, table) == []  # still waiting, nothing repeated
    append(table, [1, 2])
    assert describe(follow(sub, table)) == [[1, 2]]


def test_rule_2_unknown_session_at_zero_waits_then_applies_the_rules() -> None:
    table = new_table()
    sub = ReadProgress(S, cur(0))
    assert follow(sub, table) == [Hello(cur(0), None), CaughtUp(cur(0))]
    append(table, [1, 2])
    assert describe(follow(sub, table)) == [[1, 2]]


def test_rule_2_then_rule_3_when_the_session_appears_under_another_incarnation() -> None:
    table = new_table()
    sub = ReadProgress(S, cur(0, inc=A))
    follow(sub, table)
    append(table, [1, 2], inc=B)
    out = follow(sub, table)
    assert describe(out) == ["gap unavailable/incarnation_changed"]
    append(table, [3], inc=B)
    assert describe(follow(sub, table)) == [[3]]


def test_rule_2_then_rule_5_when_the_session_appears_above_the_floor() -> None:
    table = new_table()
    sub = ReadProgress(S, cur(0))
    follow(sub, table)
    append(table, [5, 6])
    assert describe(follow(sub, table)) == ["gap trimmed/retention"]


def test_rule_2_unknown_session_past_zero_is_a_gap_then_reads_as_earliest() -> None:
    table = new_table()
    sub = ReadProgress(S, cur(5))
    out = follow(sub, table, now=1000)
    assert out[0] == Hello(cur(5), None)
    assert out[1] == Gap(
        S, str(cur(5)), None, None, GapReason.UNAVAILABLE, GapDetail.UNKNOWN_SESSION, None
    )
    assert out[2] == CaughtUp(None)
    assert len(out) == 3
    assert follow(sub, table, now=1001) == []  # no second gap while it stays unknown
    append(table, [3, 4], inc=B)
    assert describe(follow(sub, table, now=1002)) == [[3, 4]]


def test_rule_2_during_the_startup_grace_waits_for_the_writer_to_resend() -> None:
    """After a daemon restart the writer re-sends its window: the reader resumes, no gap."""
    table = new_table()
    sub = ReadProgress(S, cur(5), grace_until_ms=1000)
    assert sub.in_grace(999) and not sub.in_grace(1000)
    out = follow(sub, table, now=500)
    assert out == [Hello(cur(5), None)]  # no caught_up yet
    assert not sub.caught_up
    assert follow(sub, table, now=600) == []
    append(table, [3, 4, 5, 6, 7], now=700)  # the writer's window, floor 3
    out = follow(sub, table, now=800)
    assert describe(out) == [[6, 7], "caught_up"]


def test_rule_2_after_the_startup_grace_the_gap_comes() -> None:
    table = new_table()
    sub = ReadProgress(S, cur(5), grace_until_ms=1000)
    follow(sub, table, now=500)
    out = follow(sub, table, now=1000)
    assert describe(out) == ["gap unavailable/unknown_session", "caught_up"]


def test_rule_4_during_the_startup_grace_waits_for_a_window_restored_in_batches() -> None:
    """Revision 1.1: the first batch of a re-sent window leaves the tail behind the
    reader's cursor; the reader waits for the rest instead of getting `ahead_of_tail`
    (and then duplicates of what it had)."""
    table = new_table()
    sub = ReadProgress(S, cur(6), grace_until_ms=1000)
    append(table, [3, 4], now=100)  # the window's oldest part
    assert follow(sub, table, now=200) == [Hello(cur(6), cur(4))]
    assert sub.wait_until_ms == 1000 and not sub.caught_up
    append(table, [5, 6, 7], now=300)
    assert describe(follow(sub, table, now=400)) == [[7], "caught_up"]


def test_rule_4_waits_while_a_restore_will_reach_the_cursor_then_gives_up() -> None:
    table = new_table(restore_wait_ms=500)
    table.append(S, A, [EventIn(1, msgspec.Raw(b"1"), p) for p in (3, 4)], 100, restore_to=9)
    sub = ReadProgress(S, cur(7))
    assert follow(sub, table, now=200) == [Hello(cur(7), cur(4))]
    assert sub.wait_until_ms == 600  # the last restore batch's time + the wait
    beyond = ReadProgress(S, cur(10))  # further than the restore goes: no wait
    assert describe(follow(beyond, table, now=200)) == [
        "hello",
        "gap unavailable/ahead_of_tail",
        "caught_up",
    ]
    # The writer went away mid-restore: the wait ends, and the gap is told.
    assert describe(follow(sub, table, now=600)) == ["gap unavailable/ahead_of_tail", "caught_up"]


def test_rule_2_grace_does_not_hide_other_gaps() -> None:
    table = new_table()
    append(table, [1, 2], inc=B)
    sub = ReadProgress(S, cur(5, inc=A), grace_until_ms=10_000)
    out = follow(sub, table, now=0)
    assert describe(out) == ["hello", "gap unavailable/incarnation_changed", "caught_up"]


# -- ReadProgress: gaps and resuming --------------------------------------------------


def test_after_a_gap_the_reader_resumes_strictly_after_the_latest_cursor() -> None:
    """Retained events before the gap's latest cursor are not sent: the host reloads."""
    table = new_table(max_events_per_session=3)
    append(table, range(1, 8), rev=2)
    sub = ReadProgress(S, cur(1))
    out = follow(sub, table)
    (gap,) = gaps(out)
    assert (gap.reason, gap.detail) == (GapReason.TRIMMED, GapDetail.RETENTION)
    assert gap.latest_cursor == cur(7, rev=2) and gap.latest_revision == 2
    assert gap.earliest_cursor == cur(5, rev=2)
    assert out[-1] == CaughtUp(cur(7, rev=2))
    assert describe(out) == ["hello", "gap trimmed/retention", "caught_up"]
    append(table, [8])
    assert describe(follow(sub, table)) == [[8]]


def test_ahead_of_tail_resumes_at_the_tail() -> None:
    table = new_table()
    append(table, [1, 2])
    sub = ReadProgress(S, cur(9))
    assert describe(follow(sub, table)) == [
        "hello",
        "gap unavailable/ahead_of_tail",
        "caught_up",
    ]
    append(table, [3])
    assert describe(follow(sub, table)) == [[3]]


def test_an_incarnation_change_while_reading_gaps_and_skips_the_new_backlog() -> None:
    table = new_table()
    append(table, [1, 2], inc=A)
    sub = ReadProgress(S, "earliest")
    assert describe(follow(sub, table)) == ["hello", [1, 2], "caught_up"]
    append(table, [1, 2, 3], inc=B, rev=6)
    out = follow(sub, table)
    (gap,) = gaps(out)
    assert gap.detail is GapDetail.INCARNATION_CHANGED
    assert gap.requested_cursor == str(cur(2, inc=A))
    assert gap.latest_cursor == cur(3, inc=B, rev=6)
    assert describe(out) == ["gap unavailable/incarnation_changed"]
    append(table, [4], inc=B)
    out = follow(sub, table)
    assert describe(out) == [[4]]
    assert isinstance(out[0], Events)
    assert json.loads(out[0].events[0].data)["replay_incarnation_id"] == B


def test_a_hole_is_served_as_writer_overflow_in_place_of_the_missing_events() -> None:
    table = new_table()
    append(table, [1, 2])
    sub = ReadProgress(S, "earliest")
    follow(sub, table)
    append(table, [5, 6])
    out = follow(sub, table)
    assert describe(out) == ["gap trimmed/writer_overflow"]
    assert gaps(out)[0].latest_cursor == cur(6)
    append(table, [7])
    assert describe(follow(sub, table)) == [[7]]


def test_a_page_stops_before_a_hole_so_the_hole_becomes_a_gap() -> None:
    """Never skip without a gap: 1, 2 then 5, 6 in one snapshot is not one page."""
    table = new_table()
    append(table, [1, 2, 5, 6])
    sub = ReadProgress(S, "earliest")
    out = feed(sub, table)
    assert describe(out) == ["hello", [1, 2]] and sub.more
    assert describe(follow(sub, table)) == ["gap trimmed/writer_overflow", "caught_up"]


def test_a_jump_inside_a_live_batch_is_a_gap() -> None:
    table = new_table()
    append(table, [1])
    sub = ReadProgress(S, cur(1))
    follow(sub, table)
    append(table, [2, 3, 7, 8])
    assert describe(follow(sub, table)) == [[2, 3], "gap trimmed/writer_overflow"]
    append(table, [9])
    assert describe(follow(sub, table)) == [[9]]


def test_lagged_only_after_the_connection_has_read() -> None:
    """Trimmed while this connection was reading: lagged. Before any read: retention."""
    table = new_table(max_events_per_session=4)
    append(table, range(1, 5))
    sub = ReadProgress(S, "earliest")
    out = feed(sub, table, limit=2)
    assert describe(out) == ["hello", [1, 2]] and sub.more
    append(table, range(5, 10))  # 3..5 are trimmed before the reader gets to them
    out = follow(sub, table, limit=2)
    assert describe(out) == ["gap trimmed/lagged", "caught_up"]
    assert gaps(out)[0].earliest_cursor == cur(6)

    fresh = ReadProgress(S, cur(2))
    assert describe(follow(fresh, table)) == ["hello", "gap trimmed/retention", "caught_up"]


def test_a_caught_up_reader_that_falls_behind_is_lagged() -> None:
    table = new_table(max_events_per_session=2)
    append(table, [1])
    sub = ReadProgress(S, cur(1))
    assert describe(follow(sub, table)) == ["hello", "caught_up"]
    append(table, [2, 3, 4])
    assert describe(follow(sub, table)) == ["gap trimmed/lagged"]


def test_a_reader_whose_first_read_gapped_is_lagged_only_after_reading() -> None:
    table = new_table(max_events_per_session=2)
    append(table, [1, 2, 3])
    sub = ReadProgress(S, cur(0))
    assert describe(follow(sub, table)) == ["hello", "gap trimmed/retention", "caught_up"]
    assert follow(sub, table) == []  # a successful read at the tail
    append(table, [4, 5, 6])
    assert describe(follow(sub, table)) == ["gap trimmed/lagged"]


# -- ReadProgress: deletion ----------------------------------------------------------


def test_a_deleted_session_gaps_once_then_reads_as_earliest() -> None:
    table = new_table()
    append(table, [1, 2])
    sub = ReadProgress(S, "earliest")
    follow(sub, table)
    table.delete(S)
    out = follow(sub, table)
    assert out == [
        Gap(S, str(cur(2)), None, None, GapReason.UNAVAILABLE, GapDetail.SESSION_DELETED, None)
    ]
    assert follow(sub, table) == []
    assert follow(sub, table) == []
    append(table, [1, 2, 3], inc=B)
    assert describe(follow(sub, table)) == [[1, 2, 3]]
    table.delete(S)  # a second deletion is a second gap
    assert describe(follow(sub, table)) == ["gap unavailable/session_deleted"]


def test_a_reader_that_saw_the_session_is_not_held_by_the_startup_grace() -> None:
    table = new_table()
    append(table, [1, 2])
    sub = ReadProgress(S, cur(1), grace_until_ms=10_000)
    assert describe(follow(sub, table, now=0)) == ["hello", [2], "caught_up"]
    table.delete(S)
    assert describe(follow(sub, table, now=1)) == ["gap unavailable/session_deleted"]


def test_deletion_before_the_first_read_is_unknown_session_not_deleted() -> None:
    table = new_table()
    append(table, [1, 2])
    table.delete(S)
    sub = ReadProgress(S, cur(2))
    assert describe(follow(sub, table)) == [
        "hello",
        "gap unavailable/unknown_session",
        "caught_up",
    ]


def test_a_deleted_session_while_waiting_at_zero() -> None:
    table = new_table()
    append(table, [1])
    sub = ReadProgress(S, "latest")
    follow(sub, table)
    table.delete(S)
    out = follow(sub, table)
    assert describe(out) == ["gap unavailable/session_deleted"]
    assert gaps(out)[0].requested_cursor == str(cur(1))


# -- ReadProgress: paging, order, caught_up -----------------------------------------


def test_backlog_pages_by_limit_with_the_more_flag() -> None:
    table = new_table()
    append(table, range(1, 8))
    sub = ReadProgress(S, cur(0))
    pages = []
    while True:
        pages.append(describe(feed(sub, table, limit=3)))
        if not sub.more:
            break
    assert pages == [["hello", [1, 2, 3]], [[4, 5, 6]], [[7], "caught_up"]]
    assert not sub.more and sub.caught_up


def test_backlog_pages_by_bytes_but_never_empty() -> None:
    table = new_table()
    append(table, [1, 2, 3, 4])
    size = table.get(S).events[0].size  # type: ignore[union-attr]
    sub = ReadProgress(S, cur(0))
    out = follow(sub, table, max_bytes=2 * size + 1)
    assert describe(out) == ["hello", [1, 2], [3, 4], "caught_up"]
    sub = ReadProgress(S, cur(0))
    out = follow(sub, table, max_bytes=1)  # each event alone is larger: one per page
    assert describe(out) == ["hello", [1], [2], [3], [4], "caught_up"]


def test_live_events_arrive_after_caught_up_in_order() -> None:
    table = new_table()
    sub = ReadProgress(S, "earliest")
    follow(sub, table)
    seen: list[int] = []
    for batch in ([1], [2, 3], [4, 5, 6]):
        append(table, batch)
        for o in follow(sub, table, limit=2):
            assert isinstance(o, Events)
            seen += [e.position for e in o.events]
    assert seen == [1, 2, 3, 4, 5, 6]


def test_caught_up_is_sent_exactly_once_whatever_happens() -> None:
    table = new_table(max_events_per_session=2)
    sub = ReadProgress(S, cur(3), grace_until_ms=10)
    outputs = follow(sub, table, now=0)
    outputs += follow(sub, table, now=20)
    append(table, [1, 2, 3, 4, 5])
    outputs += follow(sub, table, now=21)
    append(table, [1], inc=B)
    outputs += follow(sub, table, now=22)
    table.delete(S)
    outputs += follow(sub, table, now=23)
    append(table, [1, 2])
    outputs += follow(sub, table, now=24, limit=1)
    assert sum(isinstance(o, CaughtUp) for o in outputs) == 1
    assert sum(isinstance(o, Hello) for o in outputs) == 1
    assert isinstance(outputs[0], Hello)


def test_caught_up_comes_after_the_backlog_and_any_gap_at_the_start() -> None:
    table = new_table()
    append(table, range(1, 6))
    sub = ReadProgress(S, cur(0))
    out = follow(sub, table, limit=2)
    assert describe(out) == ["hello", [1, 2], [3, 4], [5], "caught_up"]
    assert out[-1] == CaughtUp(cur(5))


def test_events_pages_carry_the_stored_bytes() -> None:
    table = new_table()
    append(table, [1], payload=b'{"k" : [1, 2]}')
    sub = ReadProgress(S, "earliest")
    out = follow(sub, table)
    assert isinstance(out[1], Events)
    assert out[1].events[0].data.endswith(b'"payload":{"k" : [1, 2]}}')


# -- read_page: one HTTP page ----------------------------------------------------------


def page(table: SessionTable, start: Cursor | str, *, limit: int = 100) -> tuple[Any, ...]:
    after = start.position if isinstance(start, Cursor) else (0 if start == "earliest" else U64_MAX)
    events, gap, next_cursor, caught_up = read_page(
        snap(table, after, limit=limit),
        start,  # type: ignore[arg-type]
        S,
    )
    return [e.position for e in events], gap, next_cursor, caught_up


def test_read_page_of_an_unknown_session() -> None:
    table = new_table()
    events, gap, next_cursor, caught_up = page(table, cur(4))
    assert (events, next_cursor, caught_up) == ([], "earliest", False)
    assert gap == Gap(
        S, str(cur(4)), None, None, GapReason.UNAVAILABLE, GapDetail.UNKNOWN_SESSION, None
    )
    assert page(table, cur(0)) == ([], None, cur(0), True)
    assert page(table, "earliest") == ([], None, "earliest", True)
    assert page(table, "latest") == ([], None, "latest", True)


def test_read_page_serves_a_page_and_its_next_cursor() -> None:
    table = new_table()
    append(table, [1, 2], rev=3)
    append(table, [3, 4, 5], rev=4)
    assert page(table, cur(0), limit=2) == ([1, 2], None, cur(2, rev=3), False)
    assert page(table, cur(2, rev=3), limit=2) == ([3, 4], None, cur(4, rev=4), False)
    assert page(table, cur(4, rev=4), limit=2) == ([5], None, cur(5, rev=4), True)
    assert page(table, cur(5, rev=4)) == ([], None, cur(5, rev=4), True)


def test_read_page_chained_through_next_cursor_reads_everything_once() -> None:
    table = new_table()
    append(table, range(1, 12))
    start: Cursor | str = "earliest"
    got: list[int] = []
    for _ in range(20):
        events, gap, start, caught_up = page(table, start, limit=3)
        assert gap is None
        got += events
        if caught_up:
            break
    assert got == list(range(1, 12))


def test_read_page_stops_before_a_hole() -> None:
    table = new_table()
    append(table, [1, 2, 5, 6])
    assert page(table, cur(0)) == ([1, 2], None, cur(2), False)
    events, gap, next_cursor, caught_up = page(table, cur(2))
    assert gap is not None and gap.detail is GapDetail.WRITER_OVERFLOW
    assert (events, next_cursor, caught_up) == ([], cur(6), True)


def test_read_page_words_on_a_known_session() -> None:
    table = new_table(max_events_per_session=2)
    append(table, [1, 2, 3], rev=5)
    assert page(table, "earliest") == ([2, 3], None, cur(3, rev=5), True)
    assert page(table, "latest") == ([], None, cur(3, rev=5), True)


@pytest.mark.parametrize(
    ("start", "detail"),
    [
        (cur(0), GapDetail.RETENTION),
        (cur(2), GapDetail.WRITER_OVERFLOW),
        (cur(9), GapDetail.AHEAD_OF_TAIL),
        (cur(5, inc=B), GapDetail.INCARNATION_CHANGED),
    ],
)
def test_read_page_gaps_carry_no_events_and_resume_at_the_tail(
    start: Cursor, detail: GapDetail
) -> None:
    """Never `lagged`: a page has no connection that was reading."""
    table = new_table(max_events_per_session=3)
    append(table, [1, 2, 5, 6, 7], rev=2)
    events, gap, next_cursor, caught_up = page(table, start)
    assert events == [] and gap is not None and gap.detail is detail
    assert next_cursor == gap.latest_cursor == cur(7, rev=2)
    assert caught_up
    assert gap.earliest_cursor == cur(5, rev=2)
