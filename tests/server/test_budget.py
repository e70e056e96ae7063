"""The memory budget is what the daemon costs: measured as the process's RSS.

A 40 MiB `--memory-budget-bytes` filled with small events, read by a MessagePack
reader (whose copies count too), and thousands of sessions that remember
superseded incarnations: the daemon grows by about its budget, not by several
times it, and says what it holds in `livereplay_memory_held_bytes`.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request

import httpx
import msgspec
from websockets.typing import Subprotocol

from tests.support.daemon import DaemonProcess
from tests.support.proc import metric, rss_bytes, wait_until
from tests.support.wire import open_stream

MiB = 1024 * 1024
BUDGET = 40 * MiB
# Python's allocator keeps some of what it was given, and a sweep settles the budget
# once a second: the daemon may grow a little beyond the budget, never several times.
SLACK = 16 * MiB
ARGS = [
    "--memory-budget-bytes",
    str(BUDGET),
    "--max-events-per-session",
    "1000000",
    "--max-bytes-per-session",
    str(1 << 30),
    "--max-append-rate",
    "0",
    "--max-batch-events",
    "4096",
]


def post(url: str, session_id: str, body: dict[str, object]) -> None:
    request = urllib.request.Request(
        f"{url}/v1/sessions/{session_id}/events",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 200


def small_events(count: int) -> dict[str, object]:
    return {"events": [{"revision": 1, "payload": {"t": "d", "i": i}} for i in range(count)]}


async def read_all_as_msgpack(ws_url: str, session_id: str) -> int:
    """A msgpack reader of everything retained: each event's msgpack copy is made."""
    events = 0
    url = f"{ws_url}/v1/sessions/{session_id}/stream?cursor=earliest"
    async with open_stream(url, subprotocols=[Subprotocol("livereplay.v1.msgpack")]) as ws:
        while True:
            frame = msgspec.msgpack.decode(await asyncio.wait_for(ws.recv(), 30))
            if frame["type"] == "events":
                events += len(frame["events"])
            elif frame["type"] == "caught_up":
                return events


async def test_a_budget_of_small_events_costs_about_the_budget() -> None:
    with DaemonProcess(args=ARGS) as daemon:
        assert daemon.proc is not None
        pid = daemon.proc.pid
        base = rss_bytes(pid)
        for _ in range(60):  # ~245k events: about twice what the budget holds
            await asyncio.to_thread(post, daemon.http_url, "s-1", small_events(4096))
        held = metric(daemon.http_url, "livereplay_memory_held_bytes")
        assert held <= BUDGET
        trimmed = metric(daemon.http_url, "livereplay_events_trimmed_total", cause="budget")
        assert trimmed > 0, "the budget was never reached: the test would show nothing"
        assert rss_bytes(pid) - base < BUDGET + SLACK

        assert await read_all_as_msgpack(daemon.ws_url, "s-1") > 50_000
        # The copies are charged as they are made; the sweep trims to the budget again.
        await asyncio.to_thread(
            wait_until,
            lambda: metric(daemon.http_url, "livereplay_memory_held_bytes") <= BUDGET,
            5,
            "the msgpack copies were not brought under the budget",
        )
        for _ in range(10):
            await asyncio.to_thread(post, daemon.http_url, "s-1", small_events(4096))
        assert rss_bytes(pid) - base < BUDGET + SLACK


async def test_sessions_that_remember_superseded_writers_count_against_the_budget() -> None:
    budget = MiB // 2
    args = [*ARGS[2:], "--memory-budget-bytes", str(budget)]
    with DaemonProcess(args=args) as daemon:
        assert daemon.proc is not None
        pid = daemon.proc.pid
        base = rss_bytes(pid)

        async def take_over(client: httpx.AsyncClient, first: int) -> None:
            for i in range(first, 300, 8):
                for k in range(66):  # 64 superseded incarnations remembered each
                    body = {
                        "incarnation": f"{k:032x}",
                        "events": [{"revision": 1, "position": 1, "payload": k}],
                    }
                    answer = await client.post(f"/v1/sessions/session-{i:04d}/events", json=body)
                    assert answer.status_code == 200, answer.text

        async with httpx.AsyncClient(base_url=daemon.http_url) as client:
            await asyncio.gather(*(take_over(client, first) for first in range(8)))
        held = metric(daemon.http_url, "livereplay_memory_held_bytes")
        assert held <= budget
        # 300 such sessions cost more than the budget: the idlest went, and were told.
        assert metric(daemon.http_url, "livereplay_sessions_evicted_total") > 0
        assert rss_bytes(pid) - base < budget + SLACK
