"""Scenario 6: readers that never read, cycled beside healthy readers.

Each stalled reader completes the handshake (cursor `earliest` on a session holding
a few MB) and never reads again, so the daemon's send buffers fill and its send
timeout (`--send-timeout-s 1`) cuts it off. The healthy readers must not notice,
and once the stalled ones are cut off the daemon's open fds and RSS come back near
their baseline within seconds, while the stalled peers still hold their sockets.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import time
from functools import partial

from tests.faults.harness import FaultRun, Scale, async_wait, metric
from tests.faults.procs import open_fds, rss_bytes
from tests.support.stalled import stalled_reader

SESSION = "fault-s6"
MiB = 1 << 20
# "Near baseline": a few fds of housekeeping, and RSS within what one cycle's
# frames in flight could leave in the allocator's free lists.
FD_SLACK = 5
RSS_SLACK = 24 * MiB


def cutoffs(url: str) -> float:
    return metric(url, "livereplay_reader_cutoffs_total")


async def footprint(pid: int, seconds: float = 0.5) -> tuple[int, int]:
    """(fds, RSS): medians over a short while."""
    fds: list[int] = []
    rss: list[int] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        fds.append(open_fds(pid) or 0)
        rss.append(rss_bytes(pid) or 0)
        await asyncio.sleep(0.05)
    return int(statistics.median(fds)), int(statistics.median(rss))


async def test_never_reading_readers_are_cut_off_and_let_go(
    fault_run: FaultRun, scale: Scale
) -> None:
    run = fault_run
    daemon = run.daemon("--send-timeout-s", "1", "--max-connections-per-client", "2000")
    assert daemon.proc is not None
    pid = daemon.proc.pid
    writer = run.writer(daemon.http_url, SESSION, "--payload-bytes", "2000", rate=1000)
    healthy = [run.reader(f"healthy-{i}", daemon.http_url, SESSION) for i in range(3)]
    await asyncio.to_thread(writer.wait_acked, 2100, 30)  # a few MB retained
    await asyncio.sleep(0.5)
    base_fds, base_rss = await footprint(pid)
    path = f"/v1/sessions/{SESSION}/stream?cursor=earliest"
    per_cycle = scale.pick(20, 50)
    cut_off = 0

    def all_cut_off(url: str, wanted: int) -> bool:
        return cutoffs(url) >= wanted

    def cut_off_report(url: str, wanted: int, cycle: int) -> str:
        return f"cycle {cycle}: the daemon cut off {cutoffs(url):.0f} of {wanted} stalled readers"

    problems: list[str] = []
    for cycle in range(scale.pick(2, 8)):
        stalled: list[socket.socket] = []
        try:
            for _ in range(per_cycle):
                stalled.append(await asyncio.to_thread(stalled_reader, daemon.port, path))
            run.fault("stalled readers")
            cut_off += per_cycle
            await async_wait(
                partial(all_cut_off, daemon.http_url, cut_off),
                15,
                partial(cut_off_report, daemon.http_url, cut_off, cycle),
            )
            # Cut off, but the peers still hold their sockets open and unread.
            deadline = time.monotonic() + 5
            while True:
                fds, rss = await footprint(pid, 0.2)
                if fds <= base_fds + FD_SLACK and rss <= base_rss + RSS_SLACK:
                    break
                if time.monotonic() > deadline:
                    problems.append(
                        f"cycle {cycle}: 5 s after {per_cycle} stalled readers were cut off "
                        f"the daemon holds {fds} fds (baseline {base_fds}) and "
                        f"{rss / MiB:.0f} MB RSS (baseline {base_rss / MiB:.0f} MB)"
                    )
                    break
        finally:
            for sock in stalled:
                sock.close()
        if problems:
            break  # the daemon keeps what it holds; more cycles would only pile up
    await asyncio.to_thread(writer.wait_acked, writer.acked + 500, 30)
    await run.finish(daemon.http_url, SESSION, readers=healthy)
    run.assert_clean()
    run.assert_no_gaps("a stalled reader must never slow a healthy one")
    assert not problems, "\n".join(problems)
