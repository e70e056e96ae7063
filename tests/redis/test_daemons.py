"""Two daemon processes and one Redis: one service, whichever daemon a client reaches."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.support.daemon import DaemonProcess
from tests.support.redis import RedisServer
from tests.support.wire import Frame, append, open_stream, positions, recv, recv_until

INC = "writer-1"


@contextlib.contextmanager
def daemons(url: str, prefix: str, count: int = 2) -> Iterator[list[DaemonProcess]]:
    args = ["--backend", "redis", "--redis-url", url, "--redis-key-prefix", prefix]
    started: list[DaemonProcess] = []
    try:
        for _ in range(count):
            daemon = DaemonProcess(args=[*args, "--startup-grace-s", "0"])
            daemon.start()
            started.append(daemon)
        yield started
    finally:
        for daemon in started:
            if daemon.proc is not None and daemon.proc.poll() is None:
                daemon.stop()
            with contextlib.suppress(OSError):
                daemon.log_path.unlink()


async def read_until_position(ws: ClientConnection, last: int, timeout: float = 10) -> list[Frame]:
    frames: list[Frame] = []
    while not positions(frames) or positions(frames)[-1] < last:
        frames.append(await recv(ws, timeout))
    return frames


async def test_append_through_one_daemon_and_read_through_the_other(
    redis_url: str, redis_prefix: str
) -> None:
    with daemons(redis_url, redis_prefix) as (a, b):
        async with (
            httpx.AsyncClient(base_url=a.http_url) as via_a,
            httpx.AsyncClient(base_url=b.http_url) as via_b,
        ):
            await append(via_a, "s", ["p1", "p2", "p3"], incarnation=INC)
            async with open_stream(b.stream_url("s", "earliest")) as reader:
                frames = await recv_until(reader, "caught_up")
                assert frames[0]["head"] == f"lashsc2:{INC}:1:3:s"
                assert positions(frames) == [1, 2, 3]
                await append(via_a, "s", ["p4"], incarnation=INC, first_position=4)
                assert positions([await recv(reader)]) == [4]
                # A writer re-sending through the other daemon is idempotent.
                result = await append(
                    via_b, "s", ["p3", "p4", "p5"], incarnation=INC, first_position=3
                )
                assert (result["accepted"], result["duplicates"]) == (1, 2)
                assert positions([await recv(reader)]) == [5]

                cursor = (await via_b.get("/v1/sessions/s/cursor")).json()
                assert cursor["position"] == 5 and cursor["retained_events"] == 5
                page = await via_b.get("/v1/sessions/s/events", params={"after": "earliest"})
                assert [e["position"] for e in page.json()["events"]] == [1, 2, 3, 4, 5]
                listed = (await via_b.get("/v1/sessions")).json()["sessions"]
                assert [(s["session_id"], s["readers"]) for s in listed] == [("s", 1)]

                # A takeover through B reaches readers on both daemons.
                async with open_stream(a.stream_url("s", "latest")) as on_a:
                    await recv_until(on_a, "caught_up")
                    await append(via_b, "s", ["new"], incarnation="writer-2")
                    for ws in (on_a, reader):
                        gap = await recv(ws)
                        assert (gap["type"], gap["detail"]) == ("gap", "incarnation_changed")
                        assert gap["latest_cursor"] == "lashsc2:writer-2:1:1:s"
                old_writer = {
                    "incarnation": INC,
                    "events": [{"revision": 1, "position": 6, "payload": 0}],
                }
                refused = await via_a.post("/v1/sessions/s/events", json=old_writer)
                assert refused.status_code == 409
                assert refused.json()["error"]["code"] == "incarnation_superseded"

                # A delete through A reaches the reader on B.
                assert (await via_a.delete("/v1/sessions/s")).status_code == 204
                gap = await recv(reader)
                assert (gap["type"], gap["detail"]) == ("gap", "session_deleted")


async def test_each_daemon_has_one_subscriber_connection_whatever_its_readers(
    redis_url: str, redis_prefix: str
) -> None:
    client = Redis.from_url(redis_url)
    with daemons(redis_url, redis_prefix, count=1) as (daemon,):
        assert daemon.proc is not None
        name = f"livereplay-{daemon.proc.pid}-"
        readers = []
        try:
            for i in range(24):
                ws = await open_stream(daemon.stream_url(f"s{i % 3}", "earliest"))
                await recv_until(ws, "caught_up")
                readers.append(ws)
            mine = [c for c in await client.client_list() if c["name"].startswith(name)]
            feeds = [c for c in mine if c["name"].endswith("-feed")]
            assert len(feeds) == 1 and int(feeds[0]["sub"]) == 3
            assert len(mine) <= 1 + 32  # the feed and the bounded command pool
        finally:
            for ws in readers:
                await ws.close()
        for _ in range(100):
            feeds = [c for c in await client.client_list() if c["name"] == name + "feed"]
            if int(feeds[0]["sub"]) == 0:
                break
            await asyncio.sleep(0.05)
        assert int(feeds[0]["sub"]) == 0
    await client.aclose()


async def test_readers_on_one_daemon_continue_when_the_other_is_killed(
    redis_url: str, redis_prefix: str
) -> None:
    total = 60
    with daemons(redis_url, redis_prefix) as (a, b):
        killed = asyncio.Event()

        async def writer() -> None:
            """Writes through A until it dies, then through B (as a load balancer would)."""
            async with (
                httpx.AsyncClient(base_url=a.http_url) as via_a,
                httpx.AsyncClient(base_url=b.http_url) as via_b,
            ):
                for position in range(1, total + 1):
                    client = via_b if killed.is_set() else via_a
                    await append(client, "s", [position], incarnation=INC, first_position=position)
                    if position == total // 2:
                        a.kill()
                        killed.set()
                    await asyncio.sleep(0.01)

        moved_at: list[int] = []

        async def reader(daemon: DaemonProcess, fallback: DaemonProcess | None) -> list[int]:
            """Follows the session; if its daemon dies, resumes on the other with its cursor."""
            seen: list[int] = []
            cursor = "earliest"
            ws = await open_stream(daemon.stream_url("s", cursor))
            try:
                while not seen or seen[-1] < total:
                    try:
                        frame = await recv(ws, timeout=10)
                    except ConnectionClosed:
                        assert fallback is not None, "a reader on the surviving daemon was closed"
                        moved_at.append(seen[-1] if seen else 0)
                        ws = await open_stream(fallback.stream_url("s", cursor))
                        continue
                    assert frame["type"] != "gap", frame
                    if frame["type"] == "events":
                        seen += positions([frame])
                        cursor = frame["events"][-1]["cursor"]
            finally:
                await ws.close()
            return seen

        readers = [
            asyncio.create_task(reader(a, fallback=b)),
            asyncio.create_task(reader(b, fallback=None)),
            asyncio.create_task(reader(b, fallback=None)),
        ]
        await asyncio.sleep(0.2)
        await writer()
        results = await asyncio.wait_for(asyncio.gather(*readers), 30)
        assert results == [list(range(1, total + 1))] * 3
        # The reader on A was cut mid-stream and resumed on B from its cursor.
        assert len(moved_at) == 1 and 0 < moved_at[0] <= total // 2

        # A restarted daemon serves the same data set at once.
        async with httpx.AsyncClient() as http:
            instance = (await http.get(b.http_url + "/readyz")).json()["instance"]
            await asyncio.to_thread(a.start)
            assert (await http.get(a.http_url + "/readyz")).json()["instance"] == instance
            page = await http.get(
                a.http_url + "/v1/sessions/s/events", params={"after": "earliest"}
            )
            assert [e["position"] for e in page.json()["events"]][-1] == total


class BufferingWriter:
    """What the runtime client does: keep a window, retry refused batches, and re-send the
    window when the daemon's instance (the Redis data set) changes."""

    def __init__(self, client: httpx.AsyncClient, window: int) -> None:
        self.client = client
        self.window = window
        self.held: list[int] = []
        self.sent_up_to = 0
        self.instance: str | None = None

    async def write(self, position: int) -> bool:
        self.held = [*self.held, position][-self.window :]
        return await self.flush()

    async def flush(self) -> bool:
        ready = await self.client.get("/readyz")
        if ready.status_code != 200:
            return False
        instance = ready.json()["instance"]
        if instance != self.instance:
            self.instance, self.sent_up_to = instance, 0  # the data set is new: re-send
        pending = [p for p in self.held if p > self.sent_up_to]
        body: dict[str, Any] = {
            "incarnation": INC,
            "events": [{"revision": 1, "position": p, "payload": p} for p in pending],
        }
        response = await self.client.post("/v1/sessions/s/events", json=body)
        if response.status_code == 503:
            assert response.json()["error"]["code"] == "unavailable"
            return False
        assert response.status_code == 200, response.text
        self.sent_up_to = pending[-1] if pending else self.sent_up_to
        return True


async def test_a_redis_restart_mid_stream_closes_readers_and_service_resumes(
    own_redis: RedisServer, redis_prefix: str
) -> None:
    with daemons(own_redis.url, redis_prefix) as (a, b):
        async with httpx.AsyncClient(base_url=a.http_url) as via_a:
            writer = BufferingWriter(via_a, window=10)
            for position in range(1, 21):
                assert await writer.write(position)
            live = await open_stream(b.stream_url("s", "earliest"))
            frames = await recv_until(live, "caught_up")
            assert positions(frames) == list(range(1, 21))
            last_cursor = frames[-1]["cursor"]  # caught_up at position 20
            first_instance = writer.instance

            own_redis.kill()
            # The reader gets a clear close to reconnect from; writes are refused.
            with pytest.raises(ConnectionClosed) as closed:
                await recv(live, timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
            for position in range(21, 26):
                assert not await writer.write(position)
            refused = await via_a.post(
                "/v1/sessions/s/events", json={"events": [{"revision": 1, "payload": 0}]}
            )
            assert (refused.status_code, refused.json()["error"]["code"]) == (503, "unavailable")
            async with open_stream(b.stream_url("s", last_cursor)) as retry:
                with pytest.raises(ConnectionClosed) as closed:
                    await recv(retry, timeout=10)
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
            assert (await via_a.get("/readyz")).status_code == 503

            own_redis.start()
            for daemon in (a, b):
                await wait_ready_with_new_instance(daemon, first_instance)

            # Before the writer re-sends: the session is unknown, an explicit gap.
            early = await open_stream(b.stream_url("s", last_cursor))
            frames = await recv_until(early, "caught_up")
            assert [f["detail"] for f in frames if f["type"] == "gap"] == ["unknown_session"]

            assert await writer.flush()  # re-sends 16..25, all it still holds
            # The early reader goes on as from `earliest` and gets the re-sent window.
            assert positions(await read_until_position(early, 25)) == list(range(16, 26))
            await early.close()

            # A reader whose cursor is inside the writer's window loses nothing.
            async with open_stream(a.stream_url("s", last_cursor)) as resumed:
                frames = await recv_until(resumed, "caught_up")
                assert positions(frames) == [21, 22, 23, 24, 25]
                assert not [f for f in frames if f["type"] == "gap"]
            # One from before the window gets the right gap, then the present.
            async with open_stream(b.stream_url("s", f"lashsc2:{INC}:1:5:s")) as behind:
                frames = await recv_until(behind, "caught_up")
                gap = next(f for f in frames if f["type"] == "gap")
                assert (gap["reason"], gap["detail"]) == ("trimmed", "retention")
                assert gap["latest_cursor"] == f"lashsc2:{INC}:1:25:s"
            # And live delivery works across daemons again.
            async with open_stream(b.stream_url("s", "latest")) as tail:
                await recv_until(tail, "caught_up")
                assert await writer.write(26)
                assert positions([await recv(tail)]) == [26]


async def wait_ready_with_new_instance(
    daemon: DaemonProcess, old: str | None, timeout: float = 15
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    async with httpx.AsyncClient(base_url=daemon.http_url) as client:
        while True:
            ready = await client.get("/readyz")
            if ready.status_code == 200 and ready.json()["instance"] != old:
                return
            assert asyncio.get_running_loop().time() < deadline, ready.text
            await asyncio.sleep(0.1)
