"""The writer's counters are true: checked against what the daemon received.

A runtime that appends faster than the daemon takes overflows its window; what it
drops must be exactly what hosts never get (in its place they get a gap), on both
backends, and a warning about losses must mean losses happened.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import httpx
import pytest

from livereplay import LiveReplayClient
from tests.support.daemon import DaemonProcess
from tests.support.redis import RedisServer, unique_prefix
from tests.writer.host import Host
from tests.writer.test_process import FAST

EVENTS = 20_000


@contextmanager
def daemon_on(backend: str) -> Iterator[DaemonProcess]:
    args = ["--max-append-rate", "0", "--max-events-per-session", str(EVENTS)]
    args += ["--max-bytes-per-session", str(64 << 20), "--startup-grace-s", "0"]
    if backend == "memory":
        with DaemonProcess(args=args) as daemon:
            yield daemon
        return
    with RedisServer() as redis:
        redis_args = ["--backend", "redis", "--redis-url", redis.url]
        with DaemonProcess(args=[*args, *redis_args, "--redis-key-prefix", unique_prefix()]) as d:
            yield d


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_dropped_is_exactly_what_hosts_never_received(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="livereplay.writer")
    with daemon_on(backend) as daemon:
        host = Host(daemon.ws_url, "s-1").start()
        client = await asyncio.to_thread(
            LiveReplayClient, daemon.http_url, options=replace(FAST, max_in_flight=2)
        )
        try:
            await asyncio.sleep(0.3)  # connected: every drop below is a window overflow
            for i in range(EVENTS):  # far faster than any daemon acknowledges
                client.append("s-1", 1, {"i": i})
            assert await asyncio.to_thread(client.close, 30)
            await host.wait_for(EVENTS)
            async with httpx.AsyncClient(base_url=daemon.http_url) as http:
                held = (await http.get("/v1/sessions/s-1/cursor")).json()["retained_events"]
        finally:
            await host.stop()
    stats = client.stats()
    # Nothing was trimmed by the daemon: what it holds is everything it ever received.
    assert stats.dropped == EVENTS - held
    assert stats.acknowledged + stats.dropped == EVENTS and stats.refused == 0
    assert len(set(host.positions)) == len(host.positions), "a host got an event twice"
    # In place of each lost run, the host got a gap: no silent hole.
    host.assert_no_silent_hole()
    assert all(g["detail"] == "writer_overflow" for g in host.gaps)
    warned = any("lost" in r.getMessage() for r in caplog.records)
    assert warned == (stats.dropped > 0)


async def test_events_in_flight_when_a_daemon_dies_are_not_claimed_lost() -> None:
    """Batches a daemon applied but never acknowledged (it was killed) are still in Redis:
    the restarted daemon says so, and the writer does not count them as dropped even when
    its window no longer holds them."""
    with RedisServer() as redis:
        args = ["--max-append-rate", "0", "--max-events-per-session", str(EVENTS)]
        args += ["--max-bytes-per-session", str(64 << 20), "--startup-grace-s", "0"]
        args += ["--backend", "redis", "--redis-url", redis.url]
        args += ["--redis-key-prefix", unique_prefix()]
        with DaemonProcess(args=args) as daemon:
            client = await asyncio.to_thread(LiveReplayClient, daemon.http_url, options=FAST)
            try:
                for round_ in range(3):
                    for i in range(EVENTS // 4):
                        client.append("s-1", 1, {"round": round_, "i": i})
                    daemon.kill()  # mid-flight: acks for applied batches are lost
                    await asyncio.to_thread(daemon.start)
                for i in range(EVENTS // 4):
                    client.append("s-1", 1, {"i": i})
                assert await asyncio.to_thread(client.close, 30)
                async with httpx.AsyncClient(base_url=daemon.http_url) as http:
                    cursor = (await http.get("/v1/sessions/s-1/cursor")).json()
            finally:
                await asyncio.to_thread(client.close, 0)
    stats = client.stats()
    assert cursor["position"] == EVENTS
    assert stats.dropped == EVENTS - cursor["retained_events"]
    assert stats.window_resends == 0  # the data set lived on: nothing to restore
