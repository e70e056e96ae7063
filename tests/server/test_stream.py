"""The reader WebSocket over a real uvicorn socket: backlog, caught_up, live, gaps, faults."""

from __future__ import annotations

import asyncio
import random
import socket
from typing import Any

import httpx
import msgspec
import pytest
from websockets.exceptions import ConnectionClosed

from tests.support.daemon import InProcessDaemon, fast_settings, run_in_process
from tests.support.wire import append, open_stream, positions, recv, recv_until

INC = "writer-1"


async def test_backlog_then_caught_up_then_live(daemon: InProcessDaemon) -> None:
    async with httpx.AsyncClient(base_url=daemon.http_url) as client:
        await append(client, "s-1", [{"n": i} for i in range(1, 6)], incarnation=INC)
        async with open_stream(daemon.stream_url("s-1", "earliest")) as ws:
            frames = await recv_until(ws, "caught_up")
            assert frames[0]["type"] == "hello"
            assert frames[0]["head"] == f"lashsc2:{INC}:1:5:s-1"
            assert positions(frames) == [1, 2, 3, 4, 5]
            assert [e["payload"] for f in frames[1:-1] for e in f["events"]] == [
                {"n": i} for i in range(1, 6)
            ]
            assert frames[-1] == {"type": "caught_up", "cursor": f"lashsc2:{INC}:1:5:s-1"}

            await append(client, "s-1", [{"n": 6}], incarnation=INC, first_position=6)
            live = await recv(ws)
            assert live["type"] == "events"
            assert [e["position"] for e in live["events"]] == [6]


async def test_resume_from_a_cursor_sends_only_what_follows(daemon: InProcessDaemon) -> None:
    async with httpx.AsyncClient(base_url=daemon.http_url) as client:
        result = await append(client, "s-1", list(range(10)), incarnation=INC)
        cursor = result["cursors"][6]  # position 7
        async with open_stream(daemon.stream_url("s-1", cursor)) as ws:
            frames = await recv_until(ws, "caught_up")
            assert frames[0]["cursor"] == cursor
            assert positions(frames) == [8, 9, 10]


async def test_cursor_at_the_tail_is_caught_up_at_once(daemon: InProcessDaemon) -> None:
    async with httpx.AsyncClient(base_url=daemon.http_url) as client:
        result = await append(client, "s-1", [1, 2], incarnation=INC)
        async with open_stream(daemon.stream_url("s-1", result["tail_cursor"])) as ws:
            frames = await recv_until(ws, "caught_up")
            assert [f["type"] for f in frames] == ["hello", "caught_up"]


async def test_latest_skips_history_and_waits_for_new_events(daemon: InProcessDaemon) -> None:
    async with httpx.AsyncClient(base_url=daemon.http_url) as client:
        await append(client, "s-1", [1, 2, 3])
        async with open_stream(daemon.stream_url("s-1", "latest")) as ws:
            frames = await recv_until(ws, "caught_up")
            assert positions(frames) == []
            await append(client, "s-1", [4])
            assert positions([await recv(ws)]) == [4]


async def test_a_reader_of_an_unknown_session_waits_for_it(daemon: InProcessDaemon) -> None:
    async with (
        httpx.AsyncClient(base_url=daemon.http_url) as client,
        open_stream(daemon.stream_url("later", "earliest")) as ws,
    ):
        hello = await recv(ws)
        assert hello["type"] == "hello" and hello["cursor"] is None and hello["head"] is None
        assert (await recv(ws))["type"] == "caught_up"
        await append(client, "later", ["first", "second"])
        assert positions([await recv(ws)]) == [1, 2]


async def test_live_events_are_batched_and_pages_respect_the_frame_limit() -> None:
    settings = fast_settings(max_frame_events=7)
    async with (
        run_in_process(settings) as daemon,
        httpx.AsyncClient(base_url=daemon.http_url) as client,
    ):
        await append(client, "s-1", list(range(20)), incarnation=INC)
        async with open_stream(daemon.stream_url("s-1", "earliest")) as ws:
            frames = await recv_until(ws, "caught_up")
            sizes = [len(f["events"]) for f in frames if f["type"] == "events"]
            assert sizes == [7, 7, 6]


async def test_100_subscribe_append_races_have_no_duplicate_and_no_hole(
    daemon: InProcessDaemon,
) -> None:
    """Readers attach at random moments while a writer appends; each sees every event after
    its start exactly once, in order, whatever the timing of the cut from backlog to live."""
    total = 400
    rng = random.Random(7)

    async def writer(client: httpx.AsyncClient) -> None:
        for first in range(1, total + 1, 4):
            await append(
                client, "race", list(range(first, first + 4)), incarnation=INC, first_position=first
            )
            await asyncio.sleep(rng.random() * 0.004)

    async def reader(delay: float, start: str) -> list[int]:
        await asyncio.sleep(delay)
        async with open_stream(daemon.stream_url("race", start)) as ws:
            hello = await recv(ws)
            begin = 0 if hello["cursor"] is None else int(hello["cursor"].split(":")[3])
            seen: list[int] = []
            while not seen or seen[-1] < total:
                frame = await recv(ws, timeout=10)
                assert frame["type"] in {"events", "caught_up"}, frame
                seen.extend(e["position"] for e in frame.get("events", []))
            assert seen == list(range(begin + 1, total + 1))
            return seen

    async with httpx.AsyncClient(base_url=daemon.http_url) as client:
        starts = ["earliest", "latest"]
        readers = [
            asyncio.create_task(reader(rng.random() * 0.5, starts[i % 2])) for i in range(100)
        ]
        await writer(client)
        results = await asyncio.gather(*readers)
    assert all(r[-1] == total for r in results)


# -- gaps over the wire ------------------------------------------------------


async def _gap_for(daemon: InProcessDaemon, session_id: str, cursor: str) -> dict[str, object]:
    async with open_stream(daemon.stream_url(session_id, cursor)) as ws:
        frames = await recv_until(ws, "caught_up")
    gaps = [f for f in frames if f["type"] == "gap"]
    assert len(gaps) == 1, frames
    assert frames[0]["type"] == "hello"
    assert frames[-2] is gaps[0]  # nothing is sent between the gap and caught_up
    return gaps[0]


async def test_gap_trimmed_retention_when_history_is_gone() -> None:
    async with (
        run_in_process(fast_settings(max_events_per_session=5)) as daemon,
        httpx.AsyncClient(base_url=daemon.http_url) as client,
    ):
        result = await append(client, "s-1", list(range(10)), incarnation=INC)
        gap = await _gap_for(daemon, "s-1", result["cursors"][1])
        assert gap == {
            "type": "gap",
            "session_id": "s-1",
            "requested_cursor": result["cursors"][1],
            "latest_cursor": result["tail_cursor"],
            "latest_revision": 1,
            "reason": "trimmed",
            "detail": "retention",
            "earliest_cursor": result["cursors"][5],
        }


async def test_gap_writer_overflow_for_a_hole(daemon: InProcessDaemon) -> None:
    async with httpx.AsyncClient(base_url=daemon.http_url) as client:
        first = await append(client, "s-1", [1, 2], incarnation=INC)
        await append(client, "s-1", [6, 7], incarnation=INC, first_position=6)
        gap = await _gap_for(daemon, "s-1", first["tail_cursor"])
        assert (gap["reason"], gap["detail"]) == ("trimmed", "writer_overflow")


async def test_gap_incarnation_changed(daemon: InProcessDaemon) -> None:
    async with httpx.AsyncClient(base_url=daemon.http_url) as client:
        old = await append(client, "s-1", [1, 2], incarnation="old")
        new = await append(client, "s-1", [1], incarnation="new")
        gap = await _gap_for(daemon, "s-1", old["tail_cursor"])
        assert (gap["reason"], gap["detail"]) == ("unavailable", "incarnation_changed")
        assert gap["latest_cursor"] == new["tail_cursor"]


async def test_gap_ahead_of_tail(daemon: InProcessDaemon) -> None:
    async with httpx.AsyncClient(base_url=daemon.http_url) as client:
        await append(client, "s-1", [1, 2], incarnation=INC)
        gap = await _gap_for(daemon, "s-1", f"lashsc2:{INC}:1:9:s-1")
        assert (gap["reason"], gap["detail"]) == ("unavailable", "ahead_of_tail")


async def test_gap_unknown_session_then_waits_as_earliest(daemon: InProcessDaemon) -> None:
    async with (
        httpx.AsyncClient(base_url=daemon.http_url) as client,
        open_stream(daemon.stream_url("gone", f"lashsc2:{INC}:1:4:gone")) as ws,
    ):
        frames = await recv_until(ws, "caught_up")
        gap = frames[1]
        assert (gap["reason"], gap["detail"]) == ("unavailable", "unknown_session")
        assert gap["latest_cursor"] is None and gap["latest_revision"] is None
        await append(client, "gone", ["new"])
        assert positions([await recv(ws)]) == [1]


async def test_gap_session_deleted_while_reading(daemon: InProcessDaemon) -> None:
    async with httpx.AsyncClient(base_url=daemon.http_url) as client:
        await append(client, "s-1", [1], incarnation=INC)
        async with open_stream(daemon.stream_url("s-1", "earliest")) as ws:
            await recv_until(ws, "caught_up")
            assert (await client.delete("/v1/sessions/s-1")).status_code == 204
            gap = await recv(ws)
            assert (gap["type"], gap["detail"]) == ("gap", "session_deleted")
            await append(client, "s-1", ["again"])
            assert positions([await recv(ws)]) == [1]


async def test_startup_grace_waits_for_the_writer_to_resend() -> None:
    """After a daemon restart, a reader's cursor is kept while the writer re-sends its window."""
    async with (
        run_in_process(fast_settings(startup_grace_s=3.0)) as daemon,
        httpx.AsyncClient(base_url=daemon.http_url) as client,
    ):
        cursor = f"lashsc2:{INC}:1:3:s-1"
        async with open_stream(daemon.stream_url("s-1", cursor)) as ws:
            assert (await recv(ws))["type"] == "hello"
            page = await client.get("/v1/sessions/s-1/events", params={"after": cursor})
            assert page.status_code == 503 and page.json()["error"]["code"] == "starting"
            await append(client, "s-1", [1, 2, 3, 4, 5], incarnation=INC)
            frames = await recv_until(ws, "caught_up")
            assert positions(frames) == [4, 5]
            assert all(f["type"] != "gap" for f in frames)


async def test_lagged_gap_when_a_slow_reader_falls_out_of_the_window() -> None:
    """A reader that pauses while the writer runs far ahead gets `lagged`, then continues."""
    settings = fast_settings(max_events_per_session=20, max_frame_events=1)
    big = "y" * 100_000
    async with (
        run_in_process(settings) as daemon,
        httpx.AsyncClient(base_url=daemon.http_url) as client,
    ):
        await append(client, "s-1", [big] * 10, incarnation=INC)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16_384)
        sock.connect(("127.0.0.1", settings.port))
        async with open_stream(daemon.stream_url("s-1", "earliest"), sock=sock, max_queue=1) as ws:
            first = await recv(ws)
            assert first["type"] == "hello"
            # The writer outruns the paused reader by far more than the window and
            # than every socket buffer in between.
            for start in range(11, 400, 5):
                await append(client, "s-1", [big] * 5, incarnation=INC, first_position=start)
            frames: list[dict[str, Any]] = []
            while not frames or frames[-1]["type"] != "gap":
                frames.append(await recv(ws, timeout=10))
            seen = positions(frames)
            assert seen == list(range(1, len(seen) + 1))
            gap = frames[-1]
            assert (gap["reason"], gap["detail"]) == ("trimmed", "lagged")
            assert gap["latest_cursor"] == f"lashsc2:{INC}:1:400:s-1"
            # The reader resumes strictly after the gap's latest cursor, then goes on live.
            await append(client, "s-1", ["live"], incarnation=INC, first_position=401)
            assert positions([await recv(ws)]) == [401]


# -- subprotocols, heartbeats, client faults ----------------------------------


async def test_msgpack_subprotocol_sends_the_same_shapes_as_binary(
    daemon: InProcessDaemon,
) -> None:
    async with httpx.AsyncClient(base_url=daemon.http_url) as client:
        await append(client, "s-1", [{"k": [1, "two", None]}], incarnation=INC)
        url = daemon.stream_url("s-1", "earliest")
        async with (
            open_stream(url, subprotocols=["livereplay.v1.msgpack"]) as packed,
            open_stream(url, subprotocols=["livereplay.v1.json"]) as text,
        ):
            assert packed.subprotocol == "livereplay.v1.msgpack"
            assert text.subprotocol == "livereplay.v1.json"
            raw = await asyncio.wait_for(packed.recv(), 5)
            assert isinstance(raw, bytes)
            packed_frames = [msgspec.msgpack.decode(raw), *await recv_until(packed, "caught_up")]
            text_frames = await recv_until(text, "caught_up")
            assert packed_frames == text_frames


async def test_no_subprotocol_gets_json_text(daemon: InProcessDaemon) -> None:
    async with open_stream(daemon.stream_url("s-1", "earliest")) as ws:
        assert ws.subprotocol is None
        assert isinstance(await asyncio.wait_for(ws.recv(), 5), str)


async def test_heartbeat_after_a_quiet_period() -> None:
    async with (
        run_in_process(fast_settings(heartbeat_s=0.3)) as daemon,
        httpx.AsyncClient(base_url=daemon.http_url) as client,
    ):
        result = await append(client, "s-1", [1], incarnation=INC)
        async with open_stream(daemon.stream_url("s-1", "latest")) as ws:
            hello = await recv(ws)
            assert hello["heartbeat_s"] == 0.3
            await recv(ws)  # caught_up
            beat = await recv(ws, timeout=2)
            assert beat == {"type": "heartbeat", "head": result["tail_cursor"]}


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/v1/sessions/s-1/stream?cursor=lashsc1:a:1:1:s-1", "malformed_cursor"),
        ("/v1/sessions/s-1/stream?cursor=lashsc2:a:1:-1:s-1", "malformed_cursor"),
        ("/v1/sessions/s-1/stream", "malformed_cursor"),
        ("/v1/sessions/s-1/stream?cursor=lashsc2:a:1:1:s-2", "wrong_session"),
        (f"/v1/sessions/s-1/stream?cursor=lashsc2:a:{'9' * 5000}:1:s-1", "malformed_cursor"),
        ("/v1/sessions/bad%20id/stream?cursor=earliest", "invalid_session_id"),
    ],
)
async def test_client_faults_get_one_error_frame_and_4400(
    daemon: InProcessDaemon, path: str, code: str
) -> None:
    async with open_stream(daemon.ws_url + path) as ws:
        frame = await recv(ws)
        assert frame["type"] == "error" and frame["code"] == code and frame["message"]
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400
