"""The writer's lean window (issue 11): events kept in their ingest encoding, a batch
their bytes joined, retention by bytes and by age on an injected clock."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from livereplay import AppendRefused, Cursor, Limits, LiveReplayClient, WriterOptions
from livereplay.protocol.ingest import Append, IngestEvent, append_decoder, encode_append, encoder
from livereplay.protocol.records import encode_record, record_size
from livereplay.protocol.rules import read_page
from livereplay.protocol.session_log import COMPACT_AFTER
from livereplay.writer.window import BatchLimits, LocalWindow

INC = "w-1"
LIMITS = BatchLimits(
    max_events=10_000,
    max_bytes=1 << 30,
    max_event_bytes=1 << 20,
    restore_max_events=10_000,
    restore_max_bytes=1 << 30,
)
texts = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=20)
session_ids = st.from_regex(r"[A-Za-z0-9._~:@+\-]{1,40}", fullmatch=True)
u64 = st.integers(0, 2**64 - 1)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000

    def __call__(self) -> int:
        return self.now


@settings(max_examples=200)
@given(
    batch_id=st.integers(0, 2**63 - 1),
    session_id=session_ids,
    incarnation=st.none() | st.from_regex(r"[A-Za-z0-9_\-]{1,64}", fullmatch=True),
    restore_to=st.none() | st.integers(1, 2**64 - 1),
    events=st.lists(
        st.builds(
            IngestEvent,
            revision=u64,
            payload=st.binary(max_size=40),
            position=st.none() | st.integers(1, 2**64 - 1),
            turn_id=st.none() | texts,
        ),
        max_size=40,
    ),
)
def test_a_batch_of_encoded_events_is_the_append_message_they_make(
    batch_id: int,
    session_id: str,
    incarnation: str | None,
    restore_to: int | None,
    events: list[IngestEvent],
) -> None:
    records = [encoder.encode(e) for e in events]
    joined = encode_append(batch_id, session_id, records, incarnation, restore_to)
    expected = Append(batch_id, session_id, events, incarnation, restore_to)
    assert append_decoder.decode(joined) == expected


@given(
    session_id=session_ids,
    turn_id=st.none() | texts,
    revision=u64,
    position=st.integers(1, 2**64 - 1),
    ts=st.integers(0, 2**50),
    payload=st.binary(max_size=60),
)
def test_record_size_is_the_length_of_the_record(
    session_id: str, turn_id: str | None, revision: int, position: int, ts: int, payload: bytes
) -> None:
    record = encode_record(session_id, INC, turn_id, revision, position, ts, payload)
    assert record_size(session_id, INC, turn_id, revision, position, ts, payload) == len(record)


def test_the_window_refuses_an_event_whose_record_the_daemon_would_refuse() -> None:
    limit = 400
    clock = Clock()
    w = LocalWindow(INC, Limits(max_event_bytes=limit), clock)
    size = record_size("s", INC, None, 1, 1, clock.now, b"")
    w.append("s", 1, b'"' + b"x" * (limit - size - 2) + b'"', None)  # exactly the limit
    try:
        w.append("s", 1, b'"' + b"x" * (limit - size - 1) + b'"', None)
    except AppendRefused as refused:
        assert refused.code == "event_too_large"
    else:
        raise AssertionError("an event one byte over the limit was taken")
    assert w.counters.appended == 1 and w.earliest("s") == 0


def test_age_retention_follows_the_clock_it_is_given() -> None:
    clock = Clock()
    w = LocalWindow(INC, Limits(max_age_ms=1_000), clock)
    for i in range(3):
        w.append("s", 1, b"%d" % i, None)
    clock.now += 500
    w.append("s", 2, b"3", None)
    clock.now += 600  # the first three are 1,100 ms old, the last 600
    assert w.trim("s") == 3
    assert w.earliest("s") == 3
    batch = w.next_batch(LIMITS)
    assert batch is not None and [e.position for e in batch.events] == [4]
    assert w.backlog().unnoticed_drops == 0 and w.counters.dropped == 3


def test_a_long_ring_slices_by_position_across_compactions_and_revisions() -> None:
    w = LocalWindow(INC, Limits(max_events_per_session=100))
    total = 3 * COMPACT_AFTER + 17
    for i in range(total):
        w.append("s", i // 500, msgspec.json.encode(i), None)
    assert w.earliest("s") == total - 100
    batch = w.next_batch(LIMITS)
    assert batch is not None
    assert [(e.position, e.revision, e.payload) for e in batch.events] == [
        (p, (p - 1) // 500, msgspec.json.encode(p - 1)) for p in range(total - 99, total + 1)
    ]
    # Read locally under the read rules: the same events, as records the daemon makes.
    snapshot = w.snapshot("s", total - 50, 1000)
    cursor = Cursor(INC, (total - 51) // 500, total - 50, "s")
    events, gap, _, _ = read_page(snapshot, cursor, "s")
    assert gap is None
    assert [msgspec.json.decode(e.data)["payload"] for e in events] == list(
        range(total - 50, total)
    )
    assert w.current_position("s", 0) == 0  # nothing acknowledged yet


def test_the_default_window_is_sized_in_bytes_not_events() -> None:
    """A burst of small events far beyond the old 2048-event window is kept whole."""
    client = LiveReplayClient("http://127.0.0.1:9", options=WriterOptions())
    try:
        for i in range(20_000):
            client.append("s", 1, {"n": i, "text": "x" * 100})
        stats = client.stats()
        assert stats.retained_events == 20_000 and stats.dropped == 0
        assert stats.retained_bytes <= WriterOptions().window.max_bytes_per_session
    finally:
        client.close(0)
