"""Slow and stalled readers, and shutdown, against real sockets."""

from __future__ import annotations

import asyncio
import signal
import time

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.support.daemon import DaemonProcess, fast_settings, run_in_process
from tests.support.stalled import stalled_reader
from tests.support.wire import append, open_stream, positions, recv, recv_until

INC = "writer-1"


async def test_a_stalled_reader_is_cut_off_without_slowing_anyone() -> None:
    """A reader that never reads cannot make the daemon hold more than its budgets, nor hold
    back the writer or a healthy reader; it is cut off when a send times out."""
    settings = fast_settings(max_events_per_session=100, send_timeout_s=1.0, max_frame_events=10)
    payload = "z" * 50_000
    total = 300
    async with (
        run_in_process(settings) as daemon,
        httpx.AsyncClient(base_url=daemon.http_url) as client,
    ):
        await append(client, "s-1", [payload], incarnation=INC)
        stalled = [
            await asyncio.to_thread(
                stalled_reader, settings.port, "/v1/sessions/s-1/stream?cursor=earliest"
            )
            for _ in range(3)
        ]
        try:
            async with open_stream(daemon.stream_url("s-1", "earliest")) as healthy:
                await recv_until(healthy, "caught_up")

                async def read_all() -> list[int]:
                    seen: list[int] = [1]
                    while seen[-1] < total:
                        frame = await recv(healthy, timeout=10)
                        assert frame["type"] == "events", frame
                        seen.extend(positions([frame]))
                    return seen

                reading = asyncio.create_task(read_all())
                for first in range(2, total + 1, 10):
                    count = min(10, total + 1 - first)
                    await append(
                        client, "s-1", [payload] * count, incarnation=INC, first_position=first
                    )
                    await asyncio.sleep(0.01)
                assert await asyncio.wait_for(reading, 30) == list(range(1, total + 1))

            state = daemon.state
            table = state.store.table
            assert table.retained_events <= settings.max_events_per_session
            assert table.retained_bytes <= settings.max_bytes_per_session
            deadline = time.monotonic() + 10
            while state.metrics.reader_cutoffs._value.get() < len(stalled):
                assert time.monotonic() < deadline, "stalled readers were never cut off"
                await asyncio.sleep(0.1)
            metrics = (await client.get("/metrics")).text
            assert "livereplay_reader_cutoffs_total 3.0" in metrics
            assert "livereplay_readers 0.0" in metrics
        finally:
            for sock in stalled:
                sock.close()


@pytest.mark.parametrize("with_stalled_reader", [False, True])
async def test_sigterm_closes_readers_with_1012_within_the_grace(
    with_stalled_reader: bool,
) -> None:
    grace = 2.0
    with DaemonProcess(args=["--shutdown-grace-s", str(grace)]) as daemon:
        async with httpx.AsyncClient(base_url=daemon.http_url) as client:
            for first in range(1, 100, 10):
                await append(
                    client, "s-1", ["p" * 50_000] * 10, incarnation=INC, first_position=first
                )
        stalled = (
            stalled_reader(daemon.port, "/v1/sessions/s-1/stream?cursor=earliest")
            if with_stalled_reader
            else None
        )
        readers = [await open_stream(daemon.stream_url("s-1", "latest")) for _ in range(3)]
        try:
            for ws in readers:
                await recv_until(ws, "caught_up")
            started = time.monotonic()
            daemon.signal(signal.SIGTERM)
            codes = []
            for ws in readers:
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        await asyncio.wait_for(ws.recv(), grace + 3)
                assert closed.value.rcvd is not None
                codes.append(closed.value.rcvd.code)
            assert codes == [1012, 1012, 1012]
            assert daemon.proc is not None
            await asyncio.to_thread(daemon.proc.wait, grace + 5)
            assert time.monotonic() - started < grace + 3
            # uvicorn re-raises the caught SIGTERM once its graceful shutdown is done.
            assert daemon.proc.returncode == -signal.SIGTERM
            assert '"event": "stopped"' in daemon.logs() or '"event":"stopped"' in daemon.logs()
        finally:
            for ws in readers:
                await ws.close()
            if stalled is not None:
                stalled.close()
