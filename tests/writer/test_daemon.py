"""The writer client against a real daemon (uvicorn on a loopback socket in the test's loop).

Hosts are plain WebSocket readers of the daemon's stream; a TCP proxy makes the
daemon unreachable without losing its memory.
"""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
import threading
import time
from dataclasses import replace
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from livereplay import Limits, LiveReplayClient, WriterOptions
from livereplay.protocol.constants import INGEST_SUBPROTOCOL
from livereplay.protocol.ingest import (
    Ack,
    Append,
    Error,
    IngestEvent,
    Refused,
    Welcome,
    encoder,
    server_decoder,
)
from livereplay_server.store import StoreUnavailable
from tests.support.daemon import InProcessDaemon, fast_settings, free_port, run_in_process
from tests.writer.host import Host
from tests.writer.proxy import Proxy

FAST = WriterOptions(backoff_base_s=0.02, backoff_cap_s=0.2, linger_s=0.002)


async def recv_bytes(ws: Any) -> bytes:
    message = await ws.recv()
    assert isinstance(message, bytes), "ingest messages are binary frames"
    return message


async def writer(url: str, options: WriterOptions = FAST) -> LiveReplayClient:
    """A client constructed outside any loop: its sender is a thread."""
    return await asyncio.to_thread(LiveReplayClient, url, options=options)


async def close(client: LiveReplayClient, timeout: float = 10.0) -> bool:
    return await asyncio.to_thread(client.close, timeout)


async def acknowledged(client: LiveReplayClient, count: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while client.stats().acknowledged < count:
        assert time.monotonic() < deadline, client.stats()
        await asyncio.sleep(0.01)


async def test_every_event_arrives_once_in_order_across_sessions(daemon: InProcessDaemon) -> None:
    client = await writer(daemon.http_url)
    hosts = {s: Host(daemon.ws_url, s).start() for s in ("s-1", "s-2", "s-3")}
    try:
        for i in range(300):
            for session_id in hosts:
                client.append(session_id, 1 + i // 100, {"i": i})
        for host in hosts.values():
            await host.wait_for(300)
            assert host.positions == list(range(1, 301))
            assert host.gaps == []
        assert await close(client)
        stats = client.stats()
        assert (stats.appended, stats.acknowledged, stats.buffered) == (900, 900, 0)
        assert (stats.dropped, stats.refused, stats.reconnects) == (0, 0, 0)
        assert stats.daemon_instance == daemon.state.store.instance_id
    finally:
        for host in hosts.values():
            await host.stop()


async def test_a_client_made_inside_a_loop_sends_from_a_task(daemon: InProcessDaemon) -> None:
    before = threading.active_count()
    client = LiveReplayClient(daemon.http_url, options=FAST)
    assert threading.active_count() == before  # no thread: a task on this loop
    events = [client.append("s-1", 2, {"n": i}) for i in range(50)]
    assert await client.aclose()
    async with httpx.AsyncClient(base_url=daemon.http_url) as http:
        page = (await http.get("/v1/sessions/s-1/events", params={"after": "earliest"})).json()
    assert [e["payload"] for e in page["events"]] == [{"n": i} for i in range(50)]
    assert [e["cursor"] for e in page["events"]] == [e.cursor for e in events]


async def test_current_cursor_is_one_a_host_can_resume_from(daemon: InProcessDaemon) -> None:
    client = await writer(daemon.http_url)
    try:
        for revision in (1, 1, 2, 3, 3):
            client.append("s-1", revision, revision)
        await acknowledged(client, 5)
        tail = client.current_cursor("s-1", 3)
        assert (tail.position, tail.revision) == (5, 3)
        # Events of a newer revision than the caller's snapshot stay after its cursor.
        assert client.current_cursor("s-1", 1).position == 2
        assert client.earliest_cursor("s-1", 3).position == 0
        host = Host(daemon.ws_url, "s-1", cursor=str(client.current_cursor("s-1", 2))).start()
        client.append("s-1", 4, "next")
        await host.wait_for(6)
        assert host.positions == [4, 5, 6] and host.gaps == []
        await host.stop()
    finally:
        await close(client)


async def test_a_new_writer_takes_over_and_the_old_ones_appends_are_refused(
    daemon: InProcessDaemon,
) -> None:
    old = await writer(daemon.http_url)
    new: LiveReplayClient | None = None
    host = Host(daemon.ws_url, "s-1").start()
    try:
        for i in range(10):
            old.append("s-1", 1, i)
        await host.wait_for(10)
        new = await writer(daemon.http_url)
        new.append("s-1", 2, "taken over")
        await acknowledged(new, 1)
        for i in range(5):
            old.append("s-1", 1, i)
        deadline = time.monotonic() + 10
        while old.stats().refused < 5:
            assert time.monotonic() < deadline, old.stats()
            await asyncio.sleep(0.01)
        assert old.stats().acknowledged == 10
        await host.wait_for(1)
        assert [(g["reason"], g["detail"]) for g in host.gaps] == [
            ("unavailable", "incarnation_changed")
        ]
        async with httpx.AsyncClient(base_url=daemon.http_url) as http:
            cursor = (await http.get("/v1/sessions/s-1/cursor")).json()
        assert cursor["incarnation"] == new.incarnation and cursor["position"] == 1
    finally:
        await host.stop()
        await close(old, 0)
        if new is not None:
            await close(new)


async def test_an_unreachable_daemon_sees_the_overflow_as_a_writer_overflow_gap(
    daemon: InProcessDaemon,
) -> None:
    options = replace(FAST, window=Limits(max_events_per_session=50))
    async with Proxy(daemon.settings.port) as proxy:
        client = await writer(proxy.http_url, options)
        host = Host(daemon.ws_url, "s-1").start()
        try:
            for i in range(20):
                client.append("s-1", 1, i)
            await host.wait_for(20)
            proxy.cut()
            for i in range(200):  # positions 21..220; the window keeps 171..220
                client.append("s-1", 1, i)
            stats = client.stats()
            assert (stats.retained_events, stats.buffered, stats.dropped) == (50, 50, 150)
            proxy.restore()
            await acknowledged(client, 70)
            for i in range(5):
                client.append("s-1", 1, i)
            await host.wait_for(225)
            assert host.positions == [*range(1, 21), *range(221, 226)]
            assert [(g["reason"], g["detail"]) for g in host.gaps] == [
                ("trimmed", "writer_overflow")
            ]
            host.assert_no_silent_hole()
            stats = client.stats()
            assert stats.dropped == 150 and stats.reconnects >= 1 and stats.refused == 0
        finally:
            await host.stop()
            await close(client)


async def test_connections_lost_mid_stream_deliver_every_event_exactly_once(
    daemon: InProcessDaemon,
) -> None:
    total = 1500  # within the window (2048 events): nothing may be dropped
    async with Proxy(daemon.settings.port) as proxy:
        client = await writer(proxy.http_url, replace(FAST, max_batch_events=50))
        host = Host(daemon.ws_url, "s-1").start()
        done = threading.Event()

        def produce() -> None:
            for i in range(total):
                client.append("s-1", 1, {"i": i})
                if i % 10 == 0:
                    time.sleep(0.005)
            done.set()

        producer = threading.Thread(target=produce)
        producer.start()
        try:
            while not done.is_set():
                await asyncio.sleep(0.05)
                proxy.cut()
                await asyncio.sleep(0.02)
                proxy.restore()
            producer.join()
            await host.wait_for(total)
            assert host.positions == list(range(1, total + 1))
            assert host.gaps == []
            assert await close(client)
            stats = client.stats()
            assert stats.reconnects >= 3 and stats.dropped == 0
            assert stats.acknowledged == total
        finally:
            await host.stop()


async def test_a_refusal_worth_retrying_is_sent_again_after_a_backoff(
    daemon: InProcessDaemon,
) -> None:
    """While the backend is unavailable the daemon refuses with `retry` and closes (1013);
    the client keeps the batch and delivers it once the backend is back."""
    store = daemon.state.store
    real_append = store.append
    failures = 0

    async def unavailable(*args: Any, **kwargs: Any) -> Any:
        nonlocal failures
        if failures < 3:
            failures += 1
            raise StoreUnavailable("backend down for a moment")
        return await real_append(*args, **kwargs)

    store.append = unavailable
    client = await writer(daemon.http_url)
    host = Host(daemon.ws_url, "s-1").start()
    try:
        for i in range(20):
            client.append("s-1", 1, i)
        await host.wait_for(20)
        assert host.positions == list(range(1, 21)) and host.gaps == []
        assert await close(client)
        stats = client.stats()
        assert failures == 3 and stats.reconnects >= 3
        assert (stats.acknowledged, stats.refused, stats.dropped) == (20, 0, 0)
    finally:
        await host.stop()


# -- the ingest socket, spoken to directly ---------------------------------------


def batch(batch_id: int, session_id: str, payloads: list[bytes], **fields: Any) -> bytes:
    events = [IngestEvent(1, p, i + 1) for i, p in enumerate(payloads)]
    return encoder.encode(Append(batch_id, session_id, events, fields.get("incarnation", "w-1")))


async def test_the_daemon_refuses_a_bad_batch_whole_and_says_why() -> None:
    settings = fast_settings(
        max_batch_bytes=64 * 1024, max_events_per_session=50, max_batch_events=50
    )
    async with (
        run_in_process(settings) as daemon,
        httpx.AsyncClient(base_url=daemon.http_url) as http,
        connect(daemon.ws_url + "/v1/ingest", subprotocols=[Subprotocol(INGEST_SUBPROTOCOL)]) as ws,
    ):
        welcome = server_decoder.decode(await recv_bytes(ws))
        assert isinstance(welcome, Welcome)
        assert welcome.instance == daemon.state.store.instance_id
        assert (welcome.max_batch_bytes, welcome.max_batch_events) == (64 * 1024, 50)

        async def answer(message: bytes) -> Any:
            await ws.send(message)
            return server_decoder.decode(await recv_bytes(ws))

        bad = await answer(batch(1, "s-1", [b'{"a":1}', b'{"a":', b"3"]))
        assert bad == Refused(1, "invalid_event", bad.message)
        assert "event 1" in bad.message and not bad.retry
        assert (await http.get("/v1/sessions/s-1/cursor")).status_code == 404  # nothing written
        assert (await answer(batch(2, "s-1", [b'"\xff"']))).code == "invalid_event"  # not UTF-8
        assert (await answer(batch(3, "not/valid", [b"1"]))).code == "invalid_session_id"
        assert (await answer(batch(4, "s-1", [b"1"] * 51))).code == "batch_too_large"
        no_positions = Append(5, "s-1", [IngestEvent(1, b"1")], "w-1")
        assert (await answer(encoder.encode(no_positions))).code == "invalid_event"
        mangled = encoder.encode({"type": "append", "id": 6, "session_id": "s-1"})
        assert (await answer(mangled)).code == "invalid_body"
        # Not I-JSON (revision 1.1): refused as over HTTP, nothing written.
        for not_i_json in (b"1e400", b"7" * 5000, b"[" * 65 + b"]" * 65, b'"\\ud800"'):
            refused = await answer(batch(6, "s-1", [b"1", not_i_json]))
            assert refused.code == "invalid_event" and "event 1" in refused.message
        assert (await http.get("/v1/sessions/s-1/cursor")).status_code == 404

        good = await answer(batch(7, "s-1", [b'{"a":1}', b" [2] ", b'"\xc3\xa9"']))
        assert good == Ack(7, 3, 0, "lashsc2:w-1:1:3:s-1", holes=0, skipped=0)
        page = (await http.get("/v1/sessions/s-1/events", params={"after": "earliest"})).json()
        assert [e["payload"] for e in page["events"]] == [{"a": 1}, [2], "é"]
        assert await answer(batch(8, "s-1", [b"1", b"2", b"3", b"4"])) == Ack(
            8, 1, 3, "lashsc2:w-1:1:4:s-1", holes=0, skipped=0
        )
        metrics = (await http.get("/metrics")).text
        assert 'livereplay_appends_refused_total{code="invalid_event"} 7.0' in metrics
        assert "livereplay_events_appended_total 4.0" in metrics


@pytest.mark.parametrize(
    ("frame", "close_code"),
    [("text frame", 4400), (b"\xc1 not msgpack", 4400), (b"x" * (200 * 1024), 1009)],
)
async def test_a_frame_that_is_no_batch_ends_the_connection(
    frame: str | bytes, close_code: int
) -> None:
    async with (
        run_in_process(fast_settings(max_batch_bytes=64 * 1024)) as daemon,
        connect(daemon.ws_url + "/v1/ingest", max_size=None) as ws,
    ):
        assert isinstance(server_decoder.decode(await recv_bytes(ws)), Welcome)
        await ws.send(frame)
        if close_code == 4400:
            error = server_decoder.decode(await recv_bytes(ws))
            assert isinstance(error, Error) and error.code == "invalid_frame"
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == close_code


# -- processes: the shell command and interpreter exit -------------------------


async def run_python(args: list[str], stdin: bytes = b"") -> tuple[int, str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_append_from_a_shell_reads_json_lines(daemon: InProcessDaemon) -> None:
    cmd = [
        "-m",
        "livereplay",
        "append",
        "s-cli",
        "--revision",
        "4",
        "--url",
        daemon.http_url,
    ]
    code, out, err = await run_python([*cmd, "--turn-id", "t-9"], b'{"a": 1}\n\n[2]\n"three"\n')
    assert code == 0, err
    cursors = out.split()
    assert len(cursors) == 3 and all(
        c.endswith(":4:" + str(i + 1) + ":s-cli") for i, c in enumerate(cursors)
    )
    async with httpx.AsyncClient(base_url=daemon.http_url) as http:
        page = (await http.get("/v1/sessions/s-cli/events", params={"after": "earliest"})).json()
    assert [(e["payload"], e["turn_id"], e["revision"]) for e in page["events"]] == [
        ({"a": 1}, "t-9", 4),
        ([2], "t-9", 4),
        ("three", "t-9", 4),
    ]

    code, out, err = await run_python(cmd, b'"kept"\n{not json\n"never read"\n')
    assert code == 2 and "line 2 is not JSON" in err
    assert len(out.split()) == 1
    code, out, err = await run_python(cmd, b'"kept"\n[1e400]\n"never read"\n')
    assert code == 2 and "line 2: the payload has a number out of range" in err
    assert len(out.split()) == 1

    unreachable = f"http://127.0.0.1:{free_port()}"
    code, _, err = await run_python(
        [
            "-m",
            "livereplay",
            "append",
            "s",
            "--revision",
            "1",
            "--url",
            unreachable,
            "--timeout",
            "0.3",
        ],
        b"1\n",
    )
    assert code == 1 and "0 of 1 events acknowledged" in err


async def test_events_still_buffered_at_interpreter_exit_are_sent(
    daemon: InProcessDaemon,
) -> None:
    script = textwrap.dedent(
        f"""
        from livereplay import LiveReplayClient
        client = LiveReplayClient({daemon.http_url!r})
        for i in range(50):
            client.append("s-exit", 1, i)
        # no close(): the interpreter's exit flushes
        """
    )
    code, _, err = await run_python(["-c", script])
    assert code == 0, err
    async with httpx.AsyncClient(base_url=daemon.http_url) as http:
        cursor = (await http.get("/v1/sessions/s-exit/cursor")).json()
    assert cursor["position"] == 50 and cursor["retained_events"] == 50
