"""Live fan-out over real sockets: shared frames, slow readers, and connections whose
bytes cannot be shared."""

from __future__ import annotations

import asyncio

import httpx

from tests.support.daemon import fast_settings, run_in_process
from tests.support.stalled import stalled_reader
from tests.support.wire import append, open_stream, positions, recv, recv_until

INC = "writer-1"


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


async def test_readers_at_the_edge_share_frames_and_a_slow_one_goes_its_own_way() -> None:
    """Every reader at the live edge gets the same frames; one that stops reading has its
    buffer fill, leaves the shared frames (counted), and does not hold the others back."""
    settings = fast_settings(live_buffer_bytes=64 * 1024, send_timeout_s=30)
    async with (
        run_in_process(settings) as daemon,
        httpx.AsyncClient(base_url=daemon.http_url) as client,
    ):
        await append(client, "s-1", ["first"], incarnation=INC)
        path = "/v1/sessions/s-1/stream?cursor=earliest"
        stalled = await asyncio.to_thread(stalled_reader, settings.port, path)
        readers = [await open_stream(daemon.stream_url("s-1", "earliest")) for _ in range(5)]
        try:
            for ws in readers:
                await recv_until(ws, "caught_up")
            await asyncio.sleep(0.2)  # all at the edge, in the group
            big = "x" * 100_000  # 6 MB in all: more than the kernel buffers of a socket
            received: list[list[int]] = [[] for _ in readers]
            for first in range(2, 62, 5):
                await append(client, "s-1", [big] * 5, incarnation=INC, first_position=first)
                for got, ws in zip(received, readers, strict=True):
                    while not got or got[-1] < first + 4:
                        got += positions([await recv(ws, timeout=10)])
            assert all(got == list(range(2, 62)) for got in received)
            metrics = (await client.get("/metrics")).text
            assert metric(metrics, "livereplay_live_slow_total") >= 1
            events = metric(metrics, "livereplay_events_sent_total")
            assert events >= 5 * 60  # everyone got everything
        finally:
            for ws in readers:
                await ws.close()
            stalled.close()


async def test_a_compressed_connection_is_served_on_its_own() -> None:
    """With permessage-deflate each connection's bytes are its own: it never shares."""
    settings = fast_settings(ws_per_message_deflate=True)
    async with (
        run_in_process(settings) as daemon,
        httpx.AsyncClient(base_url=daemon.http_url) as client,
    ):
        await append(client, "s-1", [1], incarnation=INC)
        url = daemon.stream_url("s-1", "earliest")
        async with (
            open_stream(url, compression="deflate") as compressed,
            open_stream(url, compression=None) as plain,
        ):
            assert compressed.protocol.extensions, "deflate was not negotiated"
            for ws in (compressed, plain):
                await recv_until(ws, "caught_up")
            for first in range(2, 12):
                await append(client, "s-1", [first], incarnation=INC, first_position=first)
            for ws in (compressed, plain):
                got: list[int] = []
                while not got or got[-1] < 11:
                    got += positions([await recv(ws)])
                assert got == list(range(2, 12))
        assert daemon.state.broadcaster.readers == 0
