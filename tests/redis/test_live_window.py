"""A Redis daemon's local window of a session (redis_live.py): fed pub/sub messages,
read by the live fan-out. Anything it cannot vouch for sends readers back to Redis."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from livereplay_server.redis_live import WINDOW_EVENTS, Malformed, Windows, parse
from tests.support.daemon import DaemonProcess
from tests.support.proc import metric
from tests.support.redis import unique_prefix
from tests.support.wire import append, open_stream, positions, recv, recv_until


def told(kind: str, inc: str, *events: tuple[int, bytes], rev: int = 1, ts: int = 5) -> bytes:
    body = b"".join(b"%d %d %d %d\n" % (p, rev, ts, len(d)) + d for p, d in events)
    return f"{kind} {inc}\n".encode() + body


def test_a_message_carries_the_batch_events_exactly() -> None:
    message = told("a", "w-1", (7, b'{"x":"a\\nb"}'), (8, b"{}"), rev=3, ts=99)
    parsed = parse(message)
    assert (parsed.kind, parsed.incarnation) == ("a", "w-1")
    assert [(e.position, e.revision, e.ts_ms, e.data) for e in parsed.events] == [
        (7, 3, 99, b'{"x":"a\\nb"}'),
        (8, 3, 99, b"{}"),
    ]
    with pytest.raises(Malformed):
        parse(b"x w-1\n")
    with pytest.raises(Malformed):
        parse(told("a", "w-1", (1, b"{}"))[:-1])


def test_the_window_serves_one_contiguous_run_and_nothing_it_cannot_vouch_for() -> None:
    windows = Windows(max_age_ms=1000)
    windows.told("s", told("n", "w-1", (1, b"1"), (2, b"2"), (3, b"3")))
    window = windows.get("s", now_ms=10)
    assert window is not None and (window.incarnation, window.tail) == ("w-1", 3)
    page = window.page_after(1, 10, 1 << 20)
    assert page is not None and [e.position for e in page] == [2, 3]
    assert window.page_after(3, 10, 1 << 20) is None  # nothing after the tail
    # A lost message (or a hole): the run starts again; readers before it read Redis.
    windows.told("s", told("a", "w-1", (6, b"6")))
    assert window.page_after(2, 10, 1 << 20) is None
    page = window.page_after(5, 10, 1 << 20)
    assert page is not None and [e.position for e in page] == [6]
    # A takeover starts a new window; a delete forgets it.
    windows.told("s", told("n", "w-2", (1, b"1")))
    new = windows.get("s", now_ms=10)
    assert new is not None and new.incarnation == "w-2"
    windows.told("s", b"")
    assert windows.get("s", now_ms=10) is None


def test_the_window_is_bounded_and_ages_like_the_log() -> None:
    windows = Windows(max_age_ms=100)
    batch = [(p, b"x") for p in range(1, WINDOW_EVENTS + 50)]
    windows.told("s", told("n", "w-1", *batch, ts=1000))
    window = windows.get("s", now_ms=1050)
    assert window is not None and len(window.events) == WINDOW_EVENTS
    assert windows.get("s", now_ms=1100) is not None and not window.events  # aged out


def test_all_windows_together_are_bounded_the_least_recently_told_let_go() -> None:
    event = b"x" * 100
    windows = Windows(max_age_ms=10_000, max_bytes=3 * 1000)
    for session_id in ("a", "b", "c"):
        windows.told(session_id, told("n", "w-1", *[(p, event) for p in range(1, 10)]))
    first = windows.get("a", now_ms=10)
    assert first is not None and windows.size <= 3000 and len(windows) == 3
    windows.told("a", told("a", "w-1", (10, event)))  # "a" is now the most recently told
    windows.told("d", told("n", "w-1", *[(p, event) for p in range(1, 10)]))
    assert windows.get("b", now_ms=10) is None  # let go: its readers read Redis
    assert windows.get("a", now_ms=10) is not None and windows.get("d", now_ms=10) is not None
    held = sum(e.size for s in ("a", "c", "d") if (w := windows.get(s, 10)) for e in w.events)
    assert windows.size == held <= 3000
    windows.told("d", b"")  # deleted
    windows.forget("c")
    assert windows.size == sum(e.size for e in first.events) and len(windows) == 1


async def test_live_readers_on_redis_are_served_without_reading_redis(redis_url: str) -> None:
    """Readers at the live edge get every event from the pub/sub messages: the daemon's
    Redis reads stay flat while events stream to them."""
    prefix = unique_prefix()
    args = ["--backend", "redis", "--redis-url", redis_url, "--redis-key-prefix", prefix]
    with DaemonProcess(args=[*args, "--startup-grace-s", "0"]) as daemon:
        async with httpx.AsyncClient(base_url=daemon.http_url) as client:
            await append(client, "s-1", [0], incarnation="w-1")
            readers = [await open_stream(daemon.stream_url("s-1", "earliest")) for _ in range(20)]
            try:
                for ws in readers:
                    await recv_until(ws, "caught_up")
                # The first message this daemon hears of the session starts its window;
                # readers that were waiting read Redis once, then join the live group.
                await append(client, "s-1", [1], incarnation="w-1", first_position=2)
                for ws in readers:
                    assert positions([await recv(ws)]) == [2]
                await asyncio.sleep(0.3)
                before = metric(daemon.http_url, "livereplay_redis_reads_total")
                for first in range(3, 203, 10):
                    await append(
                        client, "s-1", list(range(10)), incarnation="w-1", first_position=first
                    )
                for ws in readers:
                    got: list[int] = []
                    while not got or got[-1] < 202:
                        got += positions([await recv(ws)])
                    assert got == list(range(3, 203))
                reads = metric(daemon.http_url, "livereplay_redis_reads_total") - before
                assert reads <= 2, f"{reads} reads of Redis for 20 live readers"
            finally:
                for ws in readers:
                    await ws.close()
