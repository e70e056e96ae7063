"""Scenario 4: the writer killed (-9) and a new writer process taking the session over.

The new process is a new incarnation: readers get `incarnation_changed` and resume in
it, and every position either incarnation had acknowledged is delivered or covered.
"""

from __future__ import annotations

import asyncio

from tests.faults.harness import FaultRun, Scale

SESSION = "fault-s4"


async def test_kill_9_writer_and_take_over(fault_run: FaultRun, scale: Scale) -> None:
    run = fault_run
    daemon = run.daemon()
    url = daemon.http_url
    # Some readers wait on the session before it exists, some join once it does.
    early = [run.reader(f"early-{i}", url, SESSION) for i in range(scale.pick(2, 5))]
    writer = run.writer(url, SESSION, rate=1000)
    await asyncio.to_thread(writer.wait_acked, 300, 30)
    late = [run.reader(f"late-{i}", url, SESSION) for i in range(scale.pick(2, 5))]
    takeovers = scale.pick(2, 8)
    for _ in range(takeovers):
        await asyncio.to_thread(writer.wait_acked, writer.acked + scale.pick(700, 2000), 30)
        await asyncio.to_thread(writer.kill)
        run.fault("writer kill -9")
        writer = run.writer(url, SESSION, rate=1000)
    await asyncio.to_thread(writer.wait_acked, 500, 30)
    await run.finish(url, SESSION)
    run.assert_clean()
    assert len(run.writers.watermarks) == takeovers + 1
    for report in run.reports:
        assert set(report.gaps) == {"incarnation_changed"}, report.describe()
    for report in run.reports[: len(early)]:
        # Readers there from the start followed every takeover as it happened.
        assert report.gaps["incarnation_changed"] == takeovers, report.describe()
    assert all(r.history.connections >= 1 for r in early + late)
