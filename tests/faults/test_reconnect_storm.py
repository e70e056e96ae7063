"""Scenario 7: a thousand readers reconnecting at once.

All connect together, the daemon is killed (-9) and restarted under them, and all
come back at once (jittered backoff) with their cursors into the writer's window:
every one resumes with no duplicate and no hole.
"""

from __future__ import annotations

import asyncio

from tests.faults.harness import FaultRun, Scale, async_wait
from tests.faults.readers import Reader

SESSION = "fault-s7"


async def test_a_thousand_readers_reconnect_at_once(fault_run: FaultRun, scale: Scale) -> None:
    run = fault_run
    daemon = run.daemon("--startup-grace-s", "10", "--max-connections-per-client", "2000")
    # 50 events/s to 1000 readers: the shared fan-out carries it while the storm
    # reconnects everyone (one task per reader saturated the daemon's core at this).
    writer = run.writer(daemon.http_url, SESSION, rate=50)
    await asyncio.to_thread(writer.wait_acked, 20, 30)
    count = 1000
    readers = [run.reader(f"r-{i}", daemon.http_url, SESSION) for i in range(count)]
    await async_wait(
        lambda: all(r.history.started for r in readers),
        60,
        lambda: (
            f"{sum(not r.history.started for r in readers)} of {count} readers never "
            f"got a hello, e.g. {next(r.where() for r in readers if not r.history.started)}"
        ),
    )
    for round_ in range(scale.pick(1, 4)):
        await asyncio.to_thread(writer.wait_acked, writer.acked + 10, 30)
        await asyncio.to_thread(run.kill_daemon, daemon)
        hellos = round_ + 2

        def behind(hellos: int = hellos) -> list[Reader]:
            return [r for r in readers if r.hellos < hellos]

        await async_wait(
            lambda: not behind(),
            30,
            lambda: (
                f"{len(behind())} of {count} readers never reconnected, e.g. "
                + "; ".join(r.where() for r in behind()[:3])
            ),
        )
    await asyncio.to_thread(writer.wait_acked, writer.acked + 10, 30)
    await run.finish(daemon.http_url, SESSION, catch_up_s=60)
    run.assert_clean()
    run.assert_no_gaps("the writer's window covered everything the readers missed")
