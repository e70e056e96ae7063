"""`subscribe()` against a real daemon: live reading, gaps, refusals, and reconnects.

The daemon restart tests use a child process killed with -9: it loses its memory,
so the writer re-sends its window with the same incarnation and positions, as the
real writer client does, and the startup grace makes readers wait for it.
"""

from __future__ import annotations

import asyncio
import signal
import time

import httpx
import pytest

from livereplay import (
    CaughtUp,
    EventOut,
    GapDetail,
    GapReason,
    ReaderOptions,
    ReaderRefused,
    ReaderStatus,
    subscribe,
)
from livereplay.reader.client import ReconnectPolicy, stream_url
from tests.readers.collect import Collected
from tests.support.daemon import DaemonProcess, InProcessDaemon, fast_settings, run_in_process
from tests.support.wire import append

INC = "writer-1"
# Quick reconnects so the tests do not sit in backoff.
FAST = ReaderOptions(backoff_base_s=0.05, backoff_cap_s=0.3, connect_timeout_s=2.0)


def collect(
    url: str, session_id: str, cursor: str = "earliest", options: ReaderOptions = FAST
) -> Collected:
    statuses: list[tuple[ReaderStatus, str | None]] = []
    reader = subscribe(
        url,
        session_id,
        cursor,
        options=options,
        on_status=lambda status, reason: statuses.append((status, reason)),
    )
    return Collected(reader, statuses=statuses).start()


@pytest.mark.parametrize("msgpack", [False, True])
async def test_backlog_then_caught_up_then_live_events(msgpack: bool) -> None:
    async with (
        run_in_process() as daemon,
        httpx.AsyncClient(base_url=daemon.http_url) as client,
    ):
        await append(client, "s-1", [{"n": 1}, {"n": 2}, {"n": 3}], incarnation=INC)
        options = ReaderOptions(msgpack=msgpack)
        reader = collect(daemon.http_url, "s-1", options=options)
        try:
            await reader.wait_for(lambda: len(reader.caught_ups) == 1)
            assert [type(i) for i in reader.items] == [EventOut] * 3 + [CaughtUp]
            assert [e.payload for e in reader.events] == [{"n": 1}, {"n": 2}, {"n": 3}]
            assert str(reader.caught_ups[0].cursor) == f"lashsc2:{INC}:1:3:s-1"
            assert reader.reader.status == "caught_up"

            result = await append(client, "s-1", [{"n": 4}], incarnation=INC, first_position=4)
            await reader.wait_for(lambda: reader.positions == [1, 2, 3, 4])
            assert reader.events[-1].cursor == result["cursors"][0]
            assert reader.reader.cursor == result["cursors"][0]
        finally:
            await reader.stop()


async def test_a_reader_of_a_session_that_does_not_exist_yet_waits_for_it(
    daemon: InProcessDaemon,
) -> None:
    earliest = collect(daemon.http_url, "later")
    latest = collect(daemon.http_url, "later", "latest")
    try:
        await earliest.wait_for(lambda: len(earliest.caught_ups) == 1)
        await latest.wait_for(lambda: len(latest.caught_ups) == 1)
        assert earliest.caught_ups[0].cursor is None
        async with httpx.AsyncClient(base_url=daemon.http_url) as client:
            await append(client, "later", ["first", "second"])
        await earliest.wait_for(lambda: earliest.positions == [1, 2])
        await latest.wait_for(lambda: latest.positions == [1, 2])
        for reader in (earliest, latest):
            assert [e.payload for e in reader.events] == ["first", "second"]
            assert reader.gaps == []
    finally:
        await earliest.stop()
        await latest.stop()


@pytest.mark.parametrize(
    ("cursor", "code"),
    [("lashsc1:a:1:1:s-1", "malformed_cursor"), ("lashsc2:a:1:1:other", "wrong_session")],
)
async def test_a_refused_cursor_raises_without_reconnecting(
    daemon: InProcessDaemon, cursor: str, code: str
) -> None:
    reader = subscribe(daemon.http_url, "s-1", cursor, options=FAST)
    started = time.monotonic()
    with pytest.raises(ReaderRefused) as refused:
        async for _ in reader:
            pass
    assert refused.value.close_code == 4400
    assert refused.value.code == code
    assert code in str(refused.value)
    assert reader.stats.connects == 1
    assert reader.stats.reconnects == 0
    assert reader.status == "closed"
    assert time.monotonic() - started < 5


async def test_a_gap_is_yielded_and_reading_resumes_after_it(daemon: InProcessDaemon) -> None:
    async with httpx.AsyncClient(base_url=daemon.http_url) as client:
        first = await append(client, "s-1", [1, 2, 3], incarnation=INC)
        reader = collect(daemon.http_url, "s-1", first["cursors"][0])
        try:
            await reader.wait_for(lambda: reader.positions == [2, 3])
            taken = await append(client, "s-1", [10, 20], incarnation="writer-2")
            await reader.wait_for(lambda: len(reader.gaps) == 1)
            gap = reader.gaps[0]
            assert (gap.reason, gap.detail) == (
                GapReason.UNAVAILABLE,
                GapDetail.INCARNATION_CHANGED,
            )
            assert str(gap.latest_cursor) == taken["tail_cursor"]
            assert reader.reader.cursor == taken["tail_cursor"]
            await append(client, "s-1", [30], incarnation="writer-2", first_position=3)
            await reader.wait_for(lambda: len(reader.events) == 3)
            assert reader.events[-1].payload == 30
            assert reader.events[-1].replay_incarnation_id == "writer-2"
        finally:
            await reader.stop()


def test_stream_url_quotes_the_cursor_and_maps_http_to_ws() -> None:
    url = stream_url("http://127.0.0.1:7447/", "a+b", "lashsc2:i:1:+2:a+b")
    assert (
        url == "ws://127.0.0.1:7447/v1/sessions/a%2Bb/stream?cursor=lashsc2%3Ai%3A1%3A%2B2%3Aa%2Bb"
    )
    assert stream_url("https://h", "s", "earliest").startswith("wss://h/v1/sessions/s/stream")


async def test_a_session_id_with_reserved_characters_reads_its_own_session(
    daemon: InProcessDaemon,
) -> None:
    session = "tenant:a+b@x~y"
    async with httpx.AsyncClient(base_url=daemon.http_url) as client:
        result = await append(client, session, [1, 2])
        reader = collect(daemon.http_url, session, result["cursors"][0])
        try:
            await reader.wait_for(lambda: len(reader.caught_ups) == 1)
            assert reader.positions == [2]
            assert reader.events[0].session_id == session
        finally:
            await reader.stop()


def test_backoff_is_capped_and_resets_after_a_healthy_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Full jitter draws from [0, ceiling); taking the ceiling shows how it grows."""
    monkeypatch.setattr("livereplay.backoff.random.uniform", lambda low, high: high)
    policy = ReconnectPolicy(ReaderOptions(backoff_base_s=1, backoff_cap_s=8, healthy_s=10))
    assert [policy.delay(0) for _ in range(6)] == [1, 2, 4, 8, 8, 8]
    policy.connected(100)
    assert policy.delay(105) == 8  # a short-lived connection does not reset it
    policy.connected(200)
    assert [policy.delay(210), policy.delay(210)] == [1, 2]
    monkeypatch.setattr("livereplay.backoff.random.uniform", lambda low, high: low)
    assert policy.delay(0) == 0


async def test_kill_and_restart_resumes_with_no_duplicate_and_no_gap() -> None:
    with DaemonProcess(args=["--startup-grace-s", "10"]) as daemon:
        async with httpx.AsyncClient(base_url=daemon.http_url) as client:
            window = [{"n": n} for n in range(1, 9)]
            await append(client, "s-1", window[:5], incarnation=INC)
            reader = collect(daemon.http_url, "s-1")
            try:
                await reader.wait_for(lambda: reader.positions == [1, 2, 3, 4, 5])
                daemon.kill()
                await reader.wait_for(lambda: reader.reader.status == "reconnecting")
                await asyncio.to_thread(daemon.start)
                # The writer comes back and re-sends its window, with three new events.
                await append(client, "s-1", window, incarnation=INC)
                await reader.wait_for(lambda: len(reader.positions) >= 8)
                await asyncio.sleep(0.2)
                assert reader.positions == [1, 2, 3, 4, 5, 6, 7, 8]
                assert [e.payload for e in reader.events] == window
                assert reader.gaps == []
                assert reader.reader.stats.reconnects >= 1
                assert any(status == "reconnecting" for status, _ in reader.statuses)
            finally:
                await reader.stop()


async def test_restart_without_the_writer_gives_a_gap_then_the_new_history() -> None:
    with DaemonProcess(args=["--startup-grace-s", "0.5"]) as daemon:
        async with httpx.AsyncClient(base_url=daemon.http_url) as client:
            await append(client, "s-1", [1, 2, 3], incarnation=INC)
            reader = collect(daemon.http_url, "s-1")
            try:
                await reader.wait_for(lambda: reader.positions == [1, 2, 3])
                await asyncio.to_thread(daemon.restart)
                await reader.wait_for(lambda: len(reader.gaps) == 1)
                gap = reader.gaps[0]
                assert (gap.reason, gap.detail) == (
                    GapReason.UNAVAILABLE,
                    GapDetail.UNKNOWN_SESSION,
                )
                assert gap.latest_cursor is None
                assert reader.reader.cursor == "earliest"
                # A new producer starts the session over: its position 1 is new, not a duplicate.
                await append(client, "s-1", ["new"])
                await reader.wait_for(lambda: len(reader.events) == 4)
                assert reader.events[-1].payload == "new"
                assert reader.events[-1].position == 1
            finally:
                await reader.stop()


async def test_after_a_gap_a_reconnect_resumes_from_the_gap_not_before_it() -> None:
    with DaemonProcess(args=["--startup-grace-s", "10"]) as daemon:
        async with httpx.AsyncClient(base_url=daemon.http_url) as client:
            await append(client, "s-1", [1, 2], incarnation=INC)
            reader = collect(daemon.http_url, "s-1")
            try:
                await reader.wait_for(lambda: reader.positions == [1, 2])
                window = ["a", "b", "c"]
                await append(client, "s-1", window[:2], incarnation="writer-2")
                await reader.wait_for(lambda: len(reader.gaps) == 1)
                await asyncio.to_thread(daemon.restart)
                await append(client, "s-1", window, incarnation="writer-2")
                await reader.wait_for(lambda: len(reader.events) == 3)
                await asyncio.sleep(0.2)
                # "a" and "b" are before the gap's resume point: the host reloads them.
                assert [e.payload for e in reader.events] == [1, 2, "c"]
                assert len(reader.gaps) == 1
                assert reader.reader.stats.reconnects >= 1
            finally:
                await reader.stop()


async def test_a_stalled_daemon_is_noticed_by_the_heartbeat_watchdog() -> None:
    """SIGSTOP: the kernel keeps the socket open, so only the missing heartbeats tell."""
    options = ReaderOptions(
        backoff_base_s=0.05, backoff_cap_s=0.3, connect_timeout_s=1.0, heartbeat_tolerance=2.0
    )
    with DaemonProcess(args=["--heartbeat-s", "0.5", "--startup-grace-s", "0"]) as daemon:
        async with httpx.AsyncClient(base_url=daemon.http_url) as client:
            await append(client, "s-1", [1, 2], incarnation=INC)
            reader = collect(daemon.http_url, "s-1", options=options)
            try:
                await reader.wait_for(lambda: len(reader.caught_ups) == 1)
                await asyncio.sleep(1.5)  # heartbeats keep a healthy idle connection up
                assert reader.reader.stats.heartbeat_timeouts == 0
                assert reader.reader.status == "caught_up"

                daemon.signal(signal.SIGSTOP)
                stopped = time.monotonic()
                try:
                    await reader.wait_for(lambda: reader.reader.status == "reconnecting", 10)
                    noticed = time.monotonic() - stopped
                    assert reader.reader.stats.heartbeat_timeouts >= 1
                    assert any("heartbeat" in (r or "") for _, r in reader.statuses)
                finally:
                    daemon.signal(signal.SIGCONT)
                assert noticed < 5
                await append(client, "s-1", [3], incarnation=INC, first_position=3)
                await reader.wait_for(lambda: reader.positions[-1:] == [3])
                await reader.wait_for(lambda: reader.reader.status == "caught_up")
                assert reader.positions == [1, 2, 3]
                assert reader.gaps == []
            finally:
                await reader.stop()


async def test_a_slow_consumer_that_is_cut_off_resumes_where_it_stopped() -> None:
    """The daemon cuts off a reader that does not take frames in time; the reader
    reconnects from its last yielded event and misses nothing."""
    # More than the socket buffers on both sides can hold, all of it retained.
    settings = fast_settings(
        send_timeout_s=0.5,
        max_frame_events=5,
        max_events_per_session=4096,
        max_bytes_per_session=64 * 1024 * 1024,
    )
    total = 1200
    async with (
        run_in_process(settings) as daemon,
        httpx.AsyncClient(base_url=daemon.http_url) as client,
    ):
        for first in range(1, total + 1, 100):
            await append(client, "s-1", ["x" * 20_000] * 100, incarnation=INC, first_position=first)
        reader = subscribe(daemon.http_url, "s-1", options=FAST)
        seen: list[int] = []
        async for item in reader:
            if isinstance(item, EventOut):
                seen.append(item.position)
                if len(seen) == 10:
                    await asyncio.sleep(2.0)  # stop reading long enough to be cut off
            if isinstance(item, CaughtUp):
                break
        await reader.aclose()
        assert seen == list(range(1, total + 1))
        assert daemon.state.metrics.reader_cutoffs._value.get() >= 1
        assert reader.stats.reconnects >= 1


async def test_a_reader_token_is_sent_and_a_missing_one_is_refused_for_good() -> None:
    from livereplay.protocol import mint_reader_token

    key = "k" * 32
    async with (
        run_in_process(fast_settings(reader_key=key)) as daemon,
        httpx.AsyncClient(base_url=daemon.http_url) as client,
    ):
        await append(client, "s-1", ["secret"])
        anonymous = subscribe(daemon.http_url, "s-1", options=FAST)
        with pytest.raises(ReaderRefused) as refused:
            await anext(anonymous)
        assert refused.value.close_code == 4401
        assert anonymous.stats.reconnects == 0

        token = mint_reader_token(key, session_id="s-1")
        reader = subscribe(daemon.http_url, "s-1", token=token, options=FAST)
        try:
            event = await asyncio.wait_for(anext(reader), 10)
            assert isinstance(event, EventOut)
            assert event.payload == "secret"
        finally:
            await reader.aclose()
