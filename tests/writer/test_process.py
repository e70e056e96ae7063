"""The writer client against a daemon child process that is killed (-9) or stopped (SIGSTOP)."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from dataclasses import replace

import httpx
import pytest

from livereplay import Limits, LiveReplayClient, WriterOptions
from tests.support.daemon import DaemonProcess
from tests.writer.host import Host

FAST = WriterOptions(backoff_base_s=0.02, backoff_cap_s=0.3, linger_s=0.002)


class Producer:
    """Appends from a plain thread, a little at a time, until stopped or `limit` is reached."""

    def __init__(self, client: LiveReplayClient, session_id: str, limit: int) -> None:
        self.client = client
        self.session_id = session_id
        self.limit = limit
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def start(self) -> Producer:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set() and self.count < self.limit:
            self.client.append(self.session_id, 1, {"i": self.count})
            self.count += 1
            time.sleep(0.001)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.count


async def test_kill_9_and_restart_a_host_resumes_with_no_gap_and_no_duplicate() -> None:
    with DaemonProcess(args=["--startup-grace-s", "10"]) as daemon:
        client = await asyncio.to_thread(LiveReplayClient, daemon.http_url, options=FAST)
        live = Host(daemon.ws_url, "s-1").start()
        # `behind` holds an old cursor through the crash: only the re-sent window serves it.
        behind = Host(daemon.ws_url, "s-1").start()
        producer = Producer(client, "s-1", limit=1500).start()
        try:
            await behind.wait_for(50)
            await behind.stop()
            await live.wait_for(300)
            daemon.kill()  # mid-stream: the daemon loses everything
            await asyncio.sleep(0.2)
            await asyncio.to_thread(daemon.start)
            behind.start()
            await asyncio.sleep(0.3)
            total = producer.stop()
            for host in (live, behind):
                await host.wait_for(total)
                assert host.positions == list(range(1, total + 1))
                assert host.gaps == []
            assert live.connections >= 2  # it did reconnect with its old cursor
            stats = client.stats()
            assert stats.window_resends == 1 and stats.dropped == 0 and stats.refused == 0
        finally:
            producer.stop()
            await live.stop()
            await behind.stop()
            await asyncio.to_thread(client.close, 5)


async def test_a_stopped_daemon_never_slows_append_and_gets_everything_after() -> None:
    window = Limits(max_events_per_session=5000, max_bytes_per_session=4 << 20)
    options = replace(
        FAST,
        window=window,
        max_batch_events=100,
        max_in_flight=2,
        ping_interval_s=0.5,
        ping_timeout_s=0.5,
        connect_timeout_s=0.5,
    )
    with DaemonProcess() as daemon:
        client = await asyncio.to_thread(LiveReplayClient, daemon.http_url, options=options)
        host = Host(daemon.ws_url, "s-1").start()
        try:
            for i in range(100):
                client.append("s-1", 1, {"i": i})
            await host.wait_for(100)
            daemon.signal(signal.SIGSTOP)
            try:
                # These appends finish while the daemon is stopped (SIGCONT comes after
                # them): an append that waited on the network would hang the test here.
                await asyncio.to_thread(
                    lambda: [client.append("s-1", 1, {"i": i}) for i in range(100, 4000)]
                )
                await asyncio.sleep(2.0)  # long enough for the keepalive to give up
                stats = client.stats()
                assert not stats.connected
                assert stats.retained_events <= window.max_events_per_session
                assert stats.retained_bytes <= window.max_bytes_per_session
                assert stats.in_flight <= options.max_in_flight * options.max_batch_events
                assert stats.buffered >= 3900 and stats.dropped == 0
            finally:
                daemon.signal(signal.SIGCONT)
            await host.wait_for(4000)
            assert host.positions == list(range(1, 4001))
            assert host.gaps == []
            assert await asyncio.to_thread(client.close, 10)
            stats = client.stats()
            assert stats.reconnects >= 1 and stats.window_resends == 0
            assert stats.acknowledged == 4000
        finally:
            await host.stop()
            await asyncio.to_thread(client.close, 0)


async def restore_after_kill_9(daemon_args: list[str], env: dict[str, str] | None = None) -> None:
    """A writer whose window spans many batches, a daemon killed and restarted under it,
    and hosts at the old tail and behind it: every event once, in order, no gap."""
    window = Limits(max_events_per_session=6000, max_bytes_per_session=16 << 20)
    options = replace(FAST, window=window, max_batch_events=256)
    args = ["--startup-grace-s", "10", "--max-events-per-session", "6000", *daemon_args]
    # 256 events per batch: the 5000-event window needs 20 batches to come back.
    args += ["--max-batch-events", "256", "--max-batch-bytes", str(64 * 1024)]
    with DaemonProcess(args=args, env=env) as daemon:
        client = await asyncio.to_thread(LiveReplayClient, daemon.http_url, options=options)
        tail_host = Host(daemon.ws_url, "s-1").start()
        behind = Host(daemon.ws_url, "s-1").start()
        try:
            for i in range(5000):
                client.append("s-1", 1, {"i": i, "pad": "x" * 40})
            await behind.wait_for(100)
            await behind.stop()
            await tail_host.wait_for(5000)
            await tail_host.stop()  # it holds the old tail's cursor through the crash
            daemon.kill()
            await asyncio.to_thread(daemon.start)
            tail_host.start()
            behind.start()
            for i in range(5000, 5200):
                client.append("s-1", 1, {"i": i})
            for host in (tail_host, behind):
                await host.wait_for(5200)
                assert host.gaps == []
                assert host.positions == list(range(1, 5201))
            stats = client.stats()
            assert stats.window_resends == 1
            assert (stats.dropped, stats.refused) == (0, 0)
            if env:
                async with httpx.AsyncClient(base_url=daemon.http_url) as http:
                    metrics = (await http.get("/metrics")).text
                assert 'livereplay_appends_refused_total{code="failpoint"} 1.0' in metrics
        finally:
            await tail_host.stop()
            await behind.stop()
            await asyncio.to_thread(client.close, 5)


async def test_a_window_larger_than_a_batch_comes_back_whole_after_kill_9() -> None:
    await restore_after_kill_9([])


async def test_a_restore_is_never_refused_by_the_append_rate() -> None:
    # 5000 events at once are far over 1000/s with a burst of 2000: only the restore may.
    await restore_after_kill_9(["--max-append-rate", "1000"])


@pytest.mark.parametrize("status", ["429", "503"])
async def test_a_restore_refused_once_is_retried_until_it_is_whole(status: str) -> None:
    await restore_after_kill_9([], env={"LIVEREPLAY_FAILPOINTS": f"refuse_restore={status}x1"})
