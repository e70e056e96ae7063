"""Section 1: HTTP batch ingest events/s, beside the bare peer and Redis XADD pipelines.

Each server gets batches of 100 events (~200-byte payloads) for a fixed time,
with 1 and then 4 batches in flight (one session, or stream, per lane), after
a short warm-up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import aiohttp

from bench import redis_peer
from bench.common import batch_body, now_ns, payload, percentile
from bench.harness import BATCH, Plan, Row, Servers, post, url
from bench.procs import Child, CpuWindow

IN_FLIGHT = (1, 4)
WARM_UP_BATCHES = 50


async def run(plan: Plan, rep: int, servers: Servers) -> list[Row]:
    rows: list[Row] = []
    for lanes in IN_FLIGHT:
        rows += await _round(plan.ingest_s, f"ingest-{rep}-{lanes}", lanes, servers)
    return rows


async def _round(seconds: float, key: str, lanes: int, servers: Servers) -> list[Row]:
    t = now_ns()
    payloads = [payload(i, t, t) for i in range(BATCH)]
    body = batch_body(payloads)
    session = url(servers.daemon, f"/v1/sessions/{key}")
    append = url(servers.peer, "/append")
    rows: list[Row] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=lanes)) as http:
        row = await _measure(
            lambda i: post(http, f"{session}-{i}/events", body), lanes, seconds, servers.daemon
        )
        rows.append({"server": "daemon", "in_flight": lanes, **row})
        row = await _measure(lambda i: post(http, append, body), lanes, seconds, servers.peer)
        rows.append({"server": "bare uvicorn", "in_flight": lanes, **row})
    clients = [redis_peer.client(servers.redis.port) for _ in range(lanes)]
    try:
        row = await _measure(
            lambda i: redis_peer.xadd_batch(clients[i], f"{key}-{i}", payloads),
            lanes,
            seconds,
            servers.redis,
        )
        rows.append({"server": "redis XADD pipeline", "in_flight": lanes, **row})
    finally:
        for c in clients:
            await c.aclose()
    return rows


async def _measure(
    send: Callable[[int], Awaitable[None]], lanes: int, seconds: float, server: Child
) -> Row:
    """`lanes` loops sending batches for `seconds`: events/s, request latency, CPU."""
    for _ in range(WARM_UP_BATCHES):
        await send(0)
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def lane(i: int) -> None:
        while time.perf_counter() < stop:
            started = time.perf_counter()
            await send(i)
            latencies.append(time.perf_counter() - started)

    cpu = CpuWindow(server)
    started = time.perf_counter()
    await asyncio.gather(*(lane(i) for i in range(lanes)))
    wall = time.perf_counter() - started
    (server_cpu,), client_cpu = cpu.close()
    latencies.sort()
    return {
        "events_per_s": len(latencies) * BATCH / wall,
        "req_p50_ms": percentile(latencies, 0.5) * 1000,
        "req_p99_ms": percentile(latencies, 0.99) * 1000,
        "server_cpu": server_cpu,
        "client_cpu": client_cpu,
    }
