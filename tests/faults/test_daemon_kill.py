"""Scenarios 1-3: the daemon killed (-9) under a writer and readers, restarted in place.

The writer's window comes back to the restarted daemon (PROTOCOL.md 5: the first
position sets the floor), and readers holding cursors into it resume with no gap
and no duplicate: during the startup grace a reader ahead of the restored tail
waits (rule 4, rev 1.1), even when the window arrives in several batches, is
throttled by the append rate, or is refused once and retried.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.faults.harness import FaultRun, Scale, metric
from tests.faults.readers import TRANSPORTS, Reader, SSETransport

SESSION = "fault-s1"
GRACE = ["--startup-grace-s", "10"]
FAST_RETRY_S = 0.05


async def pause(seconds: float) -> None:
    await asyncio.sleep(seconds)


async def kill_rounds(
    run: FaultRun,
    daemon_url: str,
    kill: object,
    lagging: list[Reader],
    rounds: int,
    every: int,
    before_kill: object = None,
) -> None:
    """`rounds` times: let the writer get `every` more events acknowledged, pause the
    lagging readers (they keep an old cursor through the crash), kill and restart."""
    writer = run.writer_procs[-1]
    for _ in range(rounds):
        await asyncio.to_thread(writer.wait_acked, writer.acked + every, 30)
        for reader in lagging:
            await reader.stop()
        await pause(0.3)
        if callable(before_kill):
            await asyncio.to_thread(before_kill)
        assert callable(kill)
        await asyncio.to_thread(kill)
        await pause(0.2)
        for reader in lagging:
            reader.start()


def readers(
    run: FaultRun, url: str, live: int, lagging: int, kinds: tuple[str, ...] = ("ws",)
) -> tuple[list[Reader], list[Reader]]:
    """Readers that retry quickly (every <= 50 ms), so they are back on the restarted
    daemon before the writer, and wait there while its window is restored. `kinds`:
    their transports in turn (readers.TRANSPORTS: WebSocket, SSE, NDJSON)."""

    def make(name: str, i: int) -> Reader:
        kind = kinds[i % len(kinds)]
        transport = TRANSPORTS[kind]()
        return run.reader(
            f"{name}-{kind}-{i}", url, SESSION, transport=transport, backoff_cap_s=FAST_RETRY_S
        )

    return [make("live", i) for i in range(live)], [make("lagging", i) for i in range(lagging)]


async def test_kill_9_daemon_under_load(fault_run: FaultRun, scale: Scale) -> None:
    """1. Several kill -9 of the daemon under ~1000 events/s: no gap at all while the
    writer's window covers what the readers missed. Readers of every transport
    (WebSocket, SSE resuming by `Last-Event-ID`, NDJSON) keep the same promises."""
    run = fault_run
    # 20 s of history at 1000 events/s, in the daemon and in the writer's window: a
    # reader that falls behind while a loaded machine restarts the daemon slowly is
    # still covered, so any gap would be the daemon's fault, not retention's.
    daemon = run.daemon(*GRACE, "--max-events-per-session", "20000")
    run.writer(daemon.http_url, SESSION, "--window-events", "20000", rate=1000)
    _, lagging = readers(
        run, daemon.http_url, scale.pick(6, 12), scale.pick(3, 6), kinds=("ws", "sse", "ndjson")
    )
    await kill_rounds(
        run,
        daemon.http_url,
        lambda: run.kill_daemon(daemon),
        lagging,
        rounds=scale.pick(2, 8),
        every=scale.pick(1000, 3000),
    )
    await asyncio.to_thread(run.writer_procs[0].wait_acked, run.writer_procs[0].acked + 500, 30)
    await run.finish(daemon.http_url, SESSION)
    run.assert_clean()
    run.assert_no_gaps("the writer's window covered everything the readers missed")
    stats = run.writer_procs[0].stats
    assert stats is not None and stats["dropped"] == 0 and stats["refused"] == 0, stats
    assert stats["window_resends"] == run.faults["daemon kill -9"], stats
    # Every reader rode out the restarts on its own transport, and the SSE readers
    # came back with the ids they were sent.
    for reader in run.readers:
        assert reader.hellos > 1, reader.where()
        if isinstance(reader.transport, SSETransport):
            assert reader.transport.last_event_id == reader.cursor, reader.where()


async def test_restore_over_the_append_rate(fault_run: FaultRun, scale: Scale) -> None:
    """2a. A restored window bigger than the rate limit's burst (2 s worth): revision 1.1
    never refuses a restore for the rate, so no refusal, no gap, no duplicate."""
    run = fault_run
    # 800 events/s allows a 1600-event burst; the writer's 2048-event window exceeds it,
    # while its steady 600 events/s stay under the limit.
    daemon = run.daemon(*GRACE, "--max-append-rate", "800")
    writer = run.writer(daemon.http_url, SESSION, rate=600)
    _, lagging = readers(run, daemon.http_url, scale.pick(3, 8), scale.pick(1, 4))
    await asyncio.to_thread(writer.wait_acked, 2100, 30)  # the window is full
    refused: list[float] = []

    def count_refusals() -> None:
        refused.append(metric(daemon.http_url, "livereplay_appends_refused_total"))

    await kill_rounds(
        run,
        daemon.http_url,
        lambda: run.kill_daemon(daemon),
        lagging,
        rounds=scale.pick(1, 5),
        every=scale.pick(300, 2500),
        before_kill=count_refusals,
    )
    await asyncio.to_thread(writer.wait_acked, writer.acked + 300, 30)
    count_refusals()
    await run.finish(daemon.http_url, SESSION)
    run.assert_clean()
    run.assert_no_gaps("the writer's window covered everything the readers missed")
    stats = writer.stats
    assert stats is not None
    assert sum(refused) == 0 and stats["deferred"] == 0, (
        f"the daemon refused {sum(refused):.0f} batches (the writer deferred "
        f"{stats['deferred']}): a window restore must not be refused by the rate limit"
    )


@pytest.mark.parametrize("status", ["503", "429"])
async def test_restore_refused_once_then_retried(
    fault_run: FaultRun, scale: Scale, status: str
) -> None:
    """2b. The restarted daemon refuses the first restore batch once (503 `unavailable`
    or 429; the failpoint `LIVEREPLAY_FAILPOINTS=refuse_restore=<status>x1`); the
    writer retries and readers see no gap and no duplicate."""
    run = fault_run
    run.scenario = f"restore_refused_{status}"
    run.row.scenario = run.scenario
    # A refused restore is retried after the daemon's Retry-After (1 s) and a restart of
    # the daemon: the writer's window must hold the ~3 s the readers then miss.
    daemon = run.daemon(*GRACE, "--max-events-per-session", "8192")
    writer = run.writer(daemon.http_url, SESSION, "--window-events", "8192", rate=1000)
    _, lagging = readers(run, daemon.http_url, scale.pick(3, 8), scale.pick(1, 4))
    # Only the restarted daemons carry the failpoint: the first start has nothing to restore.
    daemon.env["LIVEREPLAY_FAILPOINTS"] = f"refuse_restore={status}x1"
    await kill_rounds(
        run,
        daemon.http_url,
        lambda: run.kill_daemon(daemon),
        lagging,
        rounds=scale.pick(1, 4),
        every=scale.pick(1500, 3000),
    )
    await asyncio.to_thread(writer.wait_acked, writer.acked + 500, 30)
    await run.finish(daemon.http_url, SESSION)
    run.assert_clean()
    run.assert_no_gaps("the refused restore batch was retried")
    stats = writer.stats
    assert stats is not None
    assert stats["deferred"] >= run.faults["daemon kill -9"], (
        f"the writer saw {stats['deferred']} deferred batches for "
        f"{run.faults['daemon kill -9']} restores: the refuse_restore failpoint did not fire"
    )


async def test_window_restored_in_several_batches(fault_run: FaultRun, scale: Scale) -> None:
    """3. A writer window of 10,000 events (batches of 512): the whole window comes back
    oldest first in many batches; readers at the old tail wait and see no gap."""
    run = fault_run
    daemon = run.daemon(*GRACE, "--max-events-per-session", "10000")
    writer = run.writer(
        daemon.http_url,
        SESSION,
        "--window-events",
        "10000",
        "--batch-events",
        "512",
        rate=1000,
    )
    _, lagging = readers(
        run, daemon.http_url, scale.pick(3, 9), scale.pick(3, 6), kinds=("ws", "sse", "ndjson")
    )

    def kill_while_the_writer_lags() -> None:
        # The writer comes back last: every reader is already waiting on the restarted
        # daemon when the first of the window's batches lands.
        writer.pause()
        try:
            run.kill_daemon(daemon)
            time.sleep(0.5)
        finally:
            writer.resume()

    await kill_rounds(
        run,
        daemon.http_url,
        kill_while_the_writer_lags,
        lagging,
        rounds=scale.pick(1, 4),
        every=scale.pick(3500, 6000),
    )
    await asyncio.to_thread(writer.wait_acked, writer.acked + 500, 30)
    await run.finish(daemon.http_url, SESSION)
    run.assert_clean()
    run.assert_no_gaps("the whole window came back before the grace ended")
    stats = writer.stats
    assert stats is not None and stats["window_resends"] == run.faults["daemon kill -9"], stats
