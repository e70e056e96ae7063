"""The writer client as a LiveReplayStore, served from its own window: no daemon needed.

The daemon's URL points at a closed port, so these also show that appends,
replay and subscriptions never wait on the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import msgspec
import pytest

from livereplay import (
    AppendRefused,
    ClientClosed,
    Cursor,
    EventOut,
    Gap,
    GapDetail,
    GapReason,
    Limits,
    LiveReplayClient,
    MalformedCursor,
    NotIJson,
    SubscriberLagged,
    WindowSubscription,
    WriterOptions,
)
from tests.support.daemon import free_port


def options(**window: int) -> WriterOptions:
    return WriterOptions(window=Limits(**window), backoff_cap_s=0.2)


def positions(replay: list[EventOut] | Gap) -> list[int]:
    assert isinstance(replay, list), replay
    return [e.position for e in replay]


@contextlib.contextmanager
def unreachable(**window: int) -> Iterator[LiveReplayClient]:
    """A client whose daemon is never there (closing it does not wait to flush)."""
    c = LiveReplayClient(f"http://127.0.0.1:{free_port()}", options=options(**window))
    try:
        yield c
    finally:
        c.close(0)


@pytest.fixture
def client() -> Iterator[LiveReplayClient]:
    with unreachable() as c:
        yield c


def test_append_assigns_positions_per_session_and_returns_the_event(
    client: LiveReplayClient,
) -> None:
    a1 = client.append("s-a", 3, {"text": "hi"}, turn_id="t-1")
    b1 = client.append("s-b", 1, [1, 2])
    a2 = client.append("s-a", 4, "x")
    assert (a1.position, a2.position, b1.position) == (1, 2, 1)
    assert a1.cursor == f"lashsc2:{client.incarnation}:3:1:s-a"
    assert a1.payload == {"text": "hi"}
    assert (a1.turn_id, a1.revision, a1.replay_incarnation_id) == ("t-1", 3, client.incarnation)
    assert a2.ts >= a1.ts > 0


def test_each_client_is_a_fresh_incarnation() -> None:
    with unreachable() as one, unreachable() as two:
        assert one.incarnation != two.incarnation
        assert one.append("s", 1, 0).cursor != two.append("s", 1, 0).cursor


def test_append_never_raises_for_the_network_and_counts_what_waits(
    client: LiveReplayClient,
) -> None:
    for i in range(200):
        client.append("s-1", 1, i)
    deadline = time.monotonic() + 10
    while client.stats().connect_failures == 0:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    stats = client.stats()
    assert (stats.appended, stats.buffered, stats.acknowledged) == (200, 200, 0)
    assert not stats.connected and stats.daemon_instance is None


def test_caller_mistakes_raise_typed_errors(client: LiveReplayClient) -> None:
    with pytest.raises(ValueError):
        client.append("bad session/id", 1, {})
    with pytest.raises(ValueError):
        client.append("s", -1, {})
    with pytest.raises(ValueError):
        client.append("s", 2**64, {})
    with pytest.raises(TypeError):
        client.append("s", 1, object())
    with unreachable(max_event_bytes=300) as small:
        with pytest.raises(AppendRefused) as refused:
            small.append("s", 1, "x" * 1000)
        assert refused.value.code == "event_too_large"
        assert small.stats().appended == 0
    with pytest.raises(ClientClosed):
        small.append("s", 1, {})
    for bad in ["lashsc1:i:1:1:s", "lashsc2:i:x:1:s", "lashsc2:i:1:1", "nonsense"]:
        with pytest.raises(MalformedCursor):
            client.replay_after_cursor(bad)
        with pytest.raises(MalformedCursor):
            client.subscribe_after_cursor(bad)


def test_replay_after_a_cursor_follows_the_read_rules(client: LiveReplayClient) -> None:
    events = [client.append("s-1", 1, {"n": i}) for i in range(1, 6)]
    replay = client.replay_after_cursor(events[1].cursor)
    assert isinstance(replay, list)
    assert [(e.position, e.payload) for e in replay] == [
        (3, {"n": 3}),
        (4, {"n": 4}),
        (5, {"n": 5}),
    ]
    assert replay[0].cursor == events[2].cursor
    assert client.replay_after_cursor(events[-1].cursor) == []  # caught up: nothing missing
    start = Cursor(client.incarnation, 1, 0, "s-1")
    assert positions(client.replay_after_cursor(start)) == [1, 2, 3, 4, 5]

    def gap(cursor: str) -> tuple[GapReason, GapDetail]:
        result = client.replay_after_cursor(cursor)
        assert isinstance(result, Gap), result
        return result.reason, result.detail

    assert gap(f"lashsc2:{client.incarnation}:1:9:s-1") == ("unavailable", "ahead_of_tail")
    assert gap("lashsc2:other:1:2:s-1") == ("unavailable", "incarnation_changed")
    assert gap(f"lashsc2:{client.incarnation}:1:2:nobody") == ("unavailable", "unknown_session")
    assert client.replay_after_cursor(f"lashsc2:{client.incarnation}:1:0:nobody") == []


def test_replay_from_before_the_window_is_a_trimmed_gap() -> None:
    with unreachable(max_events_per_session=3) as client:
        events = [client.append("s-1", 1, i) for i in range(6)]
        result = client.replay_after_cursor(events[0].cursor)
        assert isinstance(result, Gap)
        assert (result.reason, result.detail) == ("trimmed", "retention")
        assert str(result.latest_cursor) == events[-1].cursor
        assert str(result.earliest_cursor) == events[3].cursor
        assert positions(client.replay_after_cursor(events[2].cursor)) == [4, 5, 6]


def test_trim_session_applies_age_retention_now() -> None:
    with unreachable(max_age_ms=50) as client:
        first = client.append("s-1", 1, "old")
        client.append("s-1", 1, "old too")
        time.sleep(0.1)
        assert client.trim_session("s-1") == 2
        assert client.trim_session("unknown") == 0
        gap = client.replay_after_cursor(first.cursor)
        assert isinstance(gap, Gap) and gap.reason == "trimmed"
        assert client.stats().retained_events == 0
        # the tail survives the trim: positions go on, and a cursor at the tail resumes
        assert client.append("s-1", 1, "new").position == 3


def test_subscription_gives_buffered_events_then_live_ones(client: LiveReplayClient) -> None:
    first = client.append("s-1", 1, "a")
    client.append("s-1", 1, "b")
    client.append("other", 1, "not this session")
    sub = client.subscribe_after_cursor(first.cursor)
    assert isinstance(sub, WindowSubscription)
    got = sub.get(timeout=1)
    assert got is not None and (got.position, got.payload) == (2, "b")

    def later() -> None:
        for i in range(3, 51):
            time.sleep(0.001)
            client.append("s-1", 1, i)

    writer = threading.Thread(target=later)
    writer.start()
    live = [sub.get(timeout=5) for _ in range(48)]
    writer.join()
    assert [e.position for e in live if e] == list(range(3, 51))
    assert sub.get(timeout=0.05) is None  # nothing more: a timeout, not an error
    sub.close()
    assert list(sub) == []


async def test_async_subscription_wakes_on_appends_from_other_threads(
    client: LiveReplayClient,
) -> None:
    start = client.current_cursor("s-1", 1)  # nothing acknowledged: position 0
    sub = client.subscribe_after_cursor(start)
    assert isinstance(sub, WindowSubscription)
    received: list[int] = []

    async def read() -> None:
        async for event in sub:
            received.append(event.position)
            if event.position == 100:
                return

    reader = asyncio.create_task(read())
    await asyncio.sleep(0.01)
    await asyncio.to_thread(lambda: [client.append("s-1", 1, i) for i in range(100)])
    await asyncio.wait_for(reader, 10)
    assert received == list(range(1, 101))


def test_a_subscriber_that_falls_out_of_the_window_is_told() -> None:
    with unreachable(max_events_per_session=10) as small:
        first = small.append("s-1", 1, 0)
        sub = small.subscribe_after_cursor(first.cursor)
        assert isinstance(sub, WindowSubscription)
        for i in range(30):
            small.append("s-1", 1, i)
        with pytest.raises(SubscriberLagged) as lagged:
            sub.get(timeout=1)
        assert (lagged.value.gap.reason, lagged.value.gap.detail) == ("trimmed", "lagged")
        at_subscribe = small.subscribe_after_cursor(first.cursor)
        assert isinstance(at_subscribe, Gap) and at_subscribe.detail == "retention"


def test_closing_the_client_ends_its_subscriptions(client: LiveReplayClient) -> None:
    sub = client.subscribe_after_cursor(client.current_cursor("s-1", 0))
    assert isinstance(sub, WindowSubscription)
    result: list[EventOut] = []
    reader = threading.Thread(target=lambda: result.extend(sub))
    reader.start()
    client.append("s-1", 0, "one")
    client.close(0)
    reader.join(10)
    assert not reader.is_alive()
    assert [e.payload for e in result] == ["one"]


def test_window_overflow_while_unreachable_is_bounded_and_counted() -> None:
    limit = 100
    payload = {"data": "x" * 100}
    with unreachable(max_events_per_session=limit, memory_budget_bytes=1 << 30) as client:
        for _ in range(1000):
            client.append("s-1", 1, payload)
        stats = client.stats()
        assert stats.retained_events == limit
        assert stats.buffered == limit
        assert stats.dropped == 1000 - limit
        size = len(msgspec.json.encode(payload))
        assert stats.retained_bytes < limit * (size + 300)


def test_importing_the_client_leaves_the_daemon_stack_out() -> None:
    code = (
        "import sys, livereplay\n"
        "from livereplay import LiveReplayClient\n"
        "heavy = {'starlette', 'uvicorn', 'structlog', 'redis', 'prometheus_client', 'httpx'}\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in heavy)\n"
        "assert not loaded, loaded\n"
        "assert 'websockets' in sys.modules and 'msgspec' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def nested(depth: int) -> object:
    value: object = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize(
    "payload",
    [float("inf"), {"x": float("nan")}, 2**64, -(2**63) - 1, "\ud800", nested(65)],
    ids=["inf", "nan", "u64+1", "i64-1", "lone-surrogate", "depth-65"],
)
def test_append_refuses_a_payload_that_is_not_i_json_and_records_nothing(
    client: LiveReplayClient, payload: object
) -> None:
    with pytest.raises(NotIJson):
        client.append("s-1", 1, payload)
    assert client.stats().appended == 0
    assert client.append("s-1", 1, nested(64)).position == 1
