"""The reader stream over plain HTTP (SSE and NDJSON) and long-poll pages, against a real
uvicorn on a loopback socket: what `EventSource`, curl and scripts rely on."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import httpx
import pytest

from livereplay.protocol import mint_reader_token
from tests.faults.harness import async_wait, metric
from tests.support.daemon import InProcessDaemon, fast_settings, run_in_process
from tests.support.httpstream import (
    NDJSON,
    SSE,
    Frames,
    positions,
    stream_path,
    stream_request,
)
from tests.support.wire import append, open_stream, recv_until

INC = "writer-1"
BOTH = pytest.mark.parametrize("accept", [SSE, NDJSON], ids=["sse", "ndjson"])


def _client(daemon: InProcessDaemon, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=daemon.http_url, timeout=10, **kwargs)


# -- the stream ----------------------------------------------------------------


async def test_sse_backlog_caught_up_then_live(daemon: InProcessDaemon) -> None:
    async with _client(daemon) as client:
        written = await append(client, "s-1", [{"n": 1}, {"n": 2}, "three"], incarnation=INC)
        async with stream_request(client, "s-1", "earliest") as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream"
            assert response.headers["cache-control"] == "no-cache"
            assert response.headers["x-accel-buffering"] == "no"
            stream = Frames(response, SSE)
            frames = await stream.until("caught_up")
            hello, *events, caught_up = stream.messages
            # The first message is `hello`, with the reconnect delay.
            assert (hello.event, hello.retry) == ("hello", 1000)
            assert frames[0]["head"] == written["tail_cursor"]
            # Each event is a message of its own without `event:`, its cursor as `id:`.
            assert [m.event for m in events] == ["message"] * 3
            assert [m.id_field for m in events] == written["cursors"]
            assert positions(frames) == [1, 2, 3]
            assert [f["events"][0]["payload"] for f in frames[1:4]] == [{"n": 1}, {"n": 2}, "three"]
            assert caught_up.event == "caught_up"
            assert caught_up.id_field == written["tail_cursor"]
            assert frames[-1] == {"type": "caught_up", "cursor": written["tail_cursor"]}

            live = await append(client, "s-1", ["four"], incarnation=INC, first_position=4)
            frame = await stream.next()
            assert positions([frame]) == [4]
            assert stream.messages[-1].id == live["cursors"][0]


async def test_ndjson_is_the_websocket_stream_line_by_line(daemon: InProcessDaemon) -> None:
    async with _client(daemon) as client:
        await append(client, "s-1", [{"k": [1, "two", None]}, 2, 3], incarnation=INC)
        async with open_stream(daemon.stream_url("s-1", "earliest")) as ws:
            expected = await recv_until(ws, "caught_up")
        async with stream_request(client, "s-1", "earliest", NDJSON) as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == NDJSON
            stream = Frames(response, NDJSON)
            assert await stream.until("caught_up") == expected
            await append(client, "s-1", [4, 5], incarnation=INC, first_position=4)
            live = await stream.next()
            assert live["type"] == "events" and positions([live]) == [4, 5]


@BOTH
async def test_line_breaks_in_a_payload_keep_a_frame_on_one_line(
    daemon: InProcessDaemon, accept: str
) -> None:
    """JSON may have line breaks between tokens; a payload keeps its bytes as sent."""
    body = b'{"events": [{"revision": 1, "payload": {"a":\r\n [1,\n 2],\r "b": "x\\ny"}}]}'
    async with _client(daemon) as client:
        assert (await client.post("/v1/sessions/s-1/events", content=body)).status_code == 200
        async with stream_request(client, "s-1", "earliest", accept) as response:
            frames = await Frames(response, accept).until("caught_up")
        assert frames[1]["events"][0]["payload"] == {"a": [1, 2], "b": "x\ny"}


@BOTH
async def test_a_live_frame_reaches_http_and_websocket_readers_alike(
    daemon: InProcessDaemon, accept: str
) -> None:
    """Many readers at the live edge share the fan-out; each gets every event once."""
    async with _client(daemon) as client:
        start = await append(client, "s-1", [0], incarnation=INC)
        async with (
            stream_request(client, "s-1", start["tail_cursor"], accept) as first,
            stream_request(client, "s-1", start["tail_cursor"], accept) as second,
            open_stream(daemon.stream_url("s-1", start["tail_cursor"])) as ws,
        ):
            streams = [Frames(first, accept), Frames(second, accept)]
            for stream in streams:
                await stream.until("caught_up")
            await recv_until(ws, "caught_up")
            for first_position in range(2, 42, 4):
                batch = list(range(first_position, first_position + 4))
                await append(client, "s-1", batch, incarnation=INC, first_position=first_position)
            for stream in streams:
                seen: list[int] = []
                while len(seen) < 40:
                    seen += positions([await stream.next()])
                assert seen == list(range(2, 42))


async def test_sse_gap_is_a_named_event_with_the_resume_cursor_as_id() -> None:
    async with (
        run_in_process(fast_settings(max_events_per_session=5)) as daemon,
        _client(daemon) as client,
    ):
        written = await append(client, "s-1", list(range(10)), incarnation=INC)
        async with stream_request(client, "s-1", written["cursors"][1]) as response:
            stream = Frames(response, SSE)
            frames = await stream.until("caught_up")
        assert [f["type"] for f in frames] == ["hello", "gap", "caught_up"]
        gap = stream.messages[1]
        assert (gap.event, gap.id_field) == ("gap", written["tail_cursor"])
        assert frames[1] == {
            "type": "gap",
            "session_id": "s-1",
            "requested_cursor": written["cursors"][1],
            "latest_cursor": written["tail_cursor"],
            "latest_revision": 1,
            "reason": "trimmed",
            "detail": "retention",
            "earliest_cursor": written["cursors"][5],
        }


async def test_sse_gap_without_a_latest_cursor_resumes_from_earliest(
    daemon: InProcessDaemon,
) -> None:
    async with (
        _client(daemon) as client,
        stream_request(client, "gone", f"lashsc2:{INC}:1:4:gone") as response,
    ):
        stream = Frames(response, SSE)
        frames = await stream.until("caught_up")
        assert (frames[1]["detail"], frames[1]["latest_cursor"]) == ("unknown_session", None)
        assert (stream.messages[1].event, stream.messages[1].id_field) == ("gap", "earliest")
        # caught_up has no cursor here: it sets no id, so `earliest` still holds.
        assert stream.messages[2].id_field is None
        assert stream.messages[2].id == "earliest"
        await append(client, "gone", ["new"])
        assert positions([await stream.next()]) == [1]


@BOTH
async def test_last_event_id_takes_the_place_of_the_cursor(
    daemon: InProcessDaemon, accept: str
) -> None:
    async with _client(daemon) as client:
        written = await append(client, "s-1", list(range(6)), incarnation=INC)
        headers = {"Last-Event-ID": written["cursors"][2]}
        async with stream_request(client, "s-1", "earliest", accept, headers) as response:
            frames = await Frames(response, accept).until("caught_up")
        assert frames[0]["cursor"] == written["cursors"][2]
        assert positions(frames) == [4, 5, 6]
        # Even with no `cursor` at all.
        async with stream_request(client, "s-1", None, accept, headers) as response:
            assert positions(await Frames(response, accept).until("caught_up")) == [4, 5, 6]


async def test_sse_resumes_from_its_last_event_id_with_no_duplicate_and_no_hole(
    daemon: InProcessDaemon,
) -> None:
    """What a browser does: reconnect with the last `id:` it saw, whatever the URL says."""
    async with _client(daemon) as client:
        await append(client, "s-1", list(range(1, 4)), incarnation=INC)
        seen: list[int] = []
        last_id = None
        for first_position in (4, 8, 12):
            headers: dict[str, str] = {"Last-Event-ID": last_id} if last_id else {}
            async with stream_request(client, "s-1", "earliest", SSE, headers) as response:
                stream = Frames(response, SSE)
                seen += positions(await stream.until("caught_up"))
                batch = list(range(first_position, first_position + 4))
                await append(client, "s-1", batch, incarnation=INC, first_position=first_position)
                while not seen or seen[-1] < first_position + 3:
                    seen += positions([await stream.next()])
                last_id = stream.messages[-1].id
        assert seen == list(range(1, 16))


async def test_startup_grace_waits_for_the_writer_to_resend() -> None:
    async with (
        run_in_process(fast_settings(startup_grace_s=3.0)) as daemon,
        _client(daemon) as client,
    ):
        cursor = f"lashsc2:{INC}:1:3:s-1"
        async with stream_request(client, "s-1", None, SSE, {"Last-Event-ID": cursor}) as r:
            stream = Frames(r, SSE)
            assert (await stream.next())["type"] == "hello"
            await append(client, "s-1", [1, 2, 3, 4, 5], incarnation=INC)
            frames = await stream.until("caught_up")
        assert positions(frames) == [4, 5]
        assert all(f["type"] != "gap" for f in frames)


@BOTH
async def test_heartbeat_after_a_quiet_period(accept: str) -> None:
    async with (
        run_in_process(fast_settings(heartbeat_s=0.3)) as daemon,
        _client(daemon) as client,
    ):
        written = await append(client, "s-1", [1], incarnation=INC)
        async with stream_request(client, "s-1", "latest", accept) as response:
            stream = Frames(response, accept)
            await stream.until("caught_up")
            assert await stream.next() == {"type": "heartbeat", "head": written["tail_cursor"]}
            if accept == SSE:
                assert stream.messages[-1].event == "heartbeat"


@BOTH
async def test_shutdown_ends_the_stream(accept: str) -> None:
    async with (
        run_in_process() as daemon,
        _client(daemon) as client,
        stream_request(client, "s-1", "earliest", accept) as response,
    ):
        stream = Frames(response, accept)
        await stream.until("caught_up")
        daemon.server.should_exit = True
        # The response ends (whole: a chunked body's last chunk), nothing after.
        assert await stream.rest() == []


# -- refusals before the stream ------------------------------------------------


@pytest.mark.parametrize(
    ("path", "headers", "code"),
    [
        ("/v1/sessions/s-1/stream?cursor=lashsc1:a:1:1:s-1", {}, "malformed_cursor"),
        ("/v1/sessions/s-1/stream", {}, "malformed_cursor"),
        ("/v1/sessions/s-1/stream?cursor=lashsc2:a:1:1:s-2", {}, "wrong_session"),
        ("/v1/sessions/bad%20id/stream?cursor=earliest", {}, "invalid_session_id"),
        ("/v1/sessions/s-1/stream?cursor=earliest", {"Last-Event-ID": "junk"}, "malformed_cursor"),
    ],
)
@BOTH
async def test_a_client_fault_is_a_400_before_any_stream(
    daemon: InProcessDaemon, path: str, headers: dict[str, str], code: str, accept: str
) -> None:
    async with _client(daemon) as client:
        response = await client.get(path, headers={"Accept": accept, **headers})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error"]["code"] == code and body["error"]["message"]


async def test_a_stream_nobody_asked_for_is_406(daemon: InProcessDaemon) -> None:
    async with _client(daemon) as client:
        response = await client.get(stream_path("s-1", "earliest"), headers={"Accept": "*/*"})
    assert response.status_code == 406
    assert response.json()["error"]["code"] == "not_acceptable"


READER_KEY = "http-stream-reader-key-of-32-bytes!!"


@BOTH
async def test_auth_and_origin_refusals(accept: str) -> None:
    settings = fast_settings(writer_token="w-token", reader_key=READER_KEY)
    async with run_in_process(settings) as daemon, _client(daemon) as client:
        writer = {"Authorization": "Bearer w-token"}
        body = {"events": [{"revision": 1, "payload": 1}]}
        assert (await client.post("/v1/sessions/s-1/events", json=body, headers=writer)).is_success

        async def status(path: str, **headers: str) -> tuple[int, str | None]:
            async with client.stream("GET", path, headers={"Accept": accept, **headers}) as r:
                if r.status_code != 200:
                    await r.aread()
                    return r.status_code, r.json()["error"]["code"]
                frames = await Frames(r, accept).until("caught_up")
                return 200, f"{len(positions(frames))} events"

        path = stream_path("s-1", "earliest")
        mine = mint_reader_token(READER_KEY, session_id="s-1")
        other = mint_reader_token(READER_KEY, session_id="s-2")
        assert await status(path) == (401, "unauthenticated")
        assert (await status(path, Authorization="Bearer junk"))[0] == 401
        assert (await status(path, Authorization=f"Bearer {other}"))[0] == 403
        assert await status(f"{path}&token={mine}") == (200, "1 events")
        assert await status(path, Authorization=f"Bearer {mine}") == (200, "1 events")
        assert await status(f"{path}&token={mine}", Origin="https://evil.example") == (
            403,
            "origin_forbidden",
        )
        assert await status(f"{path}&token={mine}", Origin="http://localhost:3000") == (
            200,
            "1 events",
        )


@BOTH
async def test_over_the_connection_limit_is_429_with_retry_after(accept: str) -> None:
    settings = fast_settings(max_connections=2)
    async with (
        run_in_process(settings) as daemon,
        _client(daemon) as client,
        open_stream(daemon.stream_url("s-1", "earliest")) as ws,
        stream_request(client, "s-1", "earliest", accept) as held,
    ):
        await recv_until(ws, "caught_up")  # a WebSocket reader holds a slot too
        await Frames(held, accept).until("caught_up")
        refused = await client.get(stream_path("s-1", "earliest"), headers={"Accept": accept})
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["error"]["code"] == "too_many_connections"
        counted = 'code="too_many_connections"'
        refusals = await asyncio.to_thread(
            metric, daemon.http_url, "livereplay_connections_refused_total", counted
        )
        assert refusals == 1


# -- slow readers ----------------------------------------------------------------


class RawStream:
    """A plain-HTTP reader on a raw socket with a small receive buffer, which can stop
    reading: the daemon's buffers for it fill up."""

    def __init__(self, port: int, path: str, accept: str) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16_384)
        self.sock.connect(("127.0.0.1", port))
        self.sock.settimeout(10)
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: {accept}\r\n\r\n"
        self.sock.sendall(request.encode())
        self.buffer = b""
        self.head = self._until(b"\r\n\r\n")

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError
        self.buffer += chunk

    def _until(self, mark: bytes) -> bytes:
        while mark not in self.buffer:
            self._fill()
        found, _, self.buffer = self.buffer.partition(mark)
        return found

    def chunk(self) -> bytes:
        """The next chunk of the chunked body."""
        size = int(self._until(b"\r\n"), 16)
        while len(self.buffer) < size + 2:
            self._fill()
        data, self.buffer = self.buffer[:size], self.buffer[size + 2 :]
        return data

    def close(self) -> None:
        self.sock.close()


def _ndjson(chunks: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in chunks.splitlines() if line]


async def test_a_slow_reader_gets_a_lagged_gap_then_goes_on() -> None:
    """A reader that stops reading while the writer runs far ahead is not buffered for:
    it gets `lagged`, then continues live."""
    settings = fast_settings(max_events_per_session=20, max_frame_events=1)
    big = "y" * 100_000
    async with run_in_process(settings) as daemon, _client(daemon) as client:
        await append(client, "s-1", [big] * 10, incarnation=INC)
        path = stream_path("s-1", "earliest")
        reader = await asyncio.to_thread(RawStream, settings.port, path, NDJSON)
        try:
            assert reader.head.startswith(b"HTTP/1.1 200")
            first = _ndjson(await asyncio.to_thread(reader.chunk))
            assert first[0]["type"] == "hello"
            for start in range(11, 400, 5):
                await append(client, "s-1", [big] * 5, incarnation=INC, first_position=start)
            frames: list[dict[str, Any]] = []
            while not frames or frames[-1]["type"] != "gap":
                frames += _ndjson(await asyncio.to_thread(reader.chunk))
            seen = positions(frames)
            assert seen == list(range(1, len(seen) + 1))
            assert (frames[-1]["reason"], frames[-1]["detail"]) == ("trimmed", "lagged")
            assert frames[-1]["latest_cursor"] == f"lashsc2:{INC}:1:400:s-1"
            await append(client, "s-1", ["live"], incarnation=INC, first_position=401)
            while positions(frames)[-1:] != [401]:
                frames += _ndjson(await asyncio.to_thread(reader.chunk))
        finally:
            reader.close()
        lagged = 'detail="lagged",reason="trimmed"'
        assert await asyncio.to_thread(metric, daemon.http_url, "livereplay_gaps_total", lagged)


async def test_a_reader_that_never_reads_is_cut_off() -> None:
    """Its connection is dropped after the send timeout: nothing stays buffered for it."""
    settings = fast_settings(send_timeout_s=0.5, max_frame_events=4)
    big = "z" * 100_000
    async with run_in_process(settings) as daemon, _client(daemon) as client:
        readers = daemon.state.store.changes.readers
        stalled = await asyncio.to_thread(
            RawStream, settings.port, stream_path("s", "earliest"), SSE
        )
        try:
            position = 1
            while readers.get("s", 0) or position == 1:
                await append(client, "s", [big] * 4, incarnation=INC, first_position=position)
                position += 4
                await asyncio.sleep(0.05)
                assert position < 4000, "the stalled reader was never cut off"
        finally:
            stalled.close()
        cutoffs = await asyncio.to_thread(
            metric, daemon.http_url, "livereplay_reader_cutoffs_total"
        )
        aborted = await asyncio.to_thread(
            metric,
            daemon.http_url,
            "livereplay_connections_aborted_total",
            'reason="send_timeout"',
        )
        assert cutoffs + aborted >= 1


# -- long-poll pages ------------------------------------------------------------


async def _until_waiting(daemon: InProcessDaemon, session_id: str, poll: asyncio.Task[Any]) -> None:
    """Until the long-poll waits on the session's changes (it counts as its reader)."""
    readers = daemon.state.store.changes.readers
    await async_wait(
        lambda: bool(readers.get(session_id)) or poll.done(), 10, lambda: "the poll never began"
    )
    assert not poll.done(), "the page was answered without waiting"


async def test_long_poll_returns_on_an_append(daemon: InProcessDaemon) -> None:
    async with _client(daemon) as client:
        written = await append(client, "s-1", [1, 2], incarnation=INC)
        params = {"after": "latest", "wait_ms": "20000"}
        poll = asyncio.create_task(client.get("/v1/sessions/s-1/events", params=params))
        await _until_waiting(daemon, "s-1", poll)
        live = await append(client, "s-1", ["three"], incarnation=INC, first_position=3)
        page = (await poll).json()
        assert [e["position"] for e in page["events"]] == [3]
        assert page["next_cursor"] == live["tail_cursor"] and page["caught_up"] is True
        assert page["gap"] is None
        # A page with something to answer does not wait.
        params = {"after": written["cursors"][0], "wait_ms": "20000"}
        again = (await client.get("/v1/sessions/s-1/events", params=params)).json()
        assert [e["position"] for e in again["events"]] == [2, 3]


async def test_long_poll_answers_an_empty_page_after_the_wait(daemon: InProcessDaemon) -> None:
    async with _client(daemon) as client:
        written = await append(client, "s-1", [1, 2], incarnation=INC)
        params = {"after": written["tail_cursor"], "wait_ms": "1000"}
        poll = asyncio.create_task(client.get("/v1/sessions/s-1/events", params=params))
        await _until_waiting(daemon, "s-1", poll)
        page = (await poll).json()
        assert page == {
            "events": [],
            "gap": None,
            "next_cursor": written["tail_cursor"],
            "caught_up": True,
        }
        assert not daemon.state.store.changes.readers.get("s-1")


async def test_long_poll_waits_for_a_session_to_appear(daemon: InProcessDaemon) -> None:
    async with _client(daemon) as client:
        params = {"after": "earliest", "wait_ms": "20000"}
        poll = asyncio.create_task(client.get("/v1/sessions/new/events", params=params))
        await _until_waiting(daemon, "new", poll)
        await append(client, "new", ["first"])
        page = (await poll).json()
        assert [e["payload"] for e in page["events"]] == ["first"]


@pytest.mark.parametrize("wait_ms", ["-1", "30001", "abc", "1.5", ""])
async def test_long_poll_refuses_a_bad_wait(daemon: InProcessDaemon, wait_ms: str) -> None:
    async with _client(daemon) as client:
        params = {"after": "earliest", "wait_ms": wait_ms}
        response = await client.get("/v1/sessions/s-1/events", params=params)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_query" and "wait_ms" in error["message"]


async def test_head_answers_the_stream_headers_and_ends(daemon: InProcessDaemon) -> None:
    async with _client(daemon) as client:
        response = await client.head(stream_path("s-1", "earliest"), headers={"Accept": SSE})
    assert response.status_code == 200
    assert response.headers["content-type"] == SSE
