"""Section 2: how long a new reader takes to receive 2048 retained events.

Daemon: a session holding exactly 2048 events; a reader connects with
`cursor=earliest` and the clock runs from before the TCP connect to the
`caught_up` frame (JSON and MessagePack subprotocols). Bare peer: its ring of
2048 events, one frame each, then `done`. Redis: one XRANGE of 2048 entries on
an open connection (so no handshake in that figure).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable

import aiohttp
import msgspec
import websockets

from bench import redis_peer
from bench.common import batch_body, now_ns, payload, percentile
from bench.harness import BATCH, RETAINED, Plan, Row, Servers, post, url
from bench.procs import Child, CpuWindow

Reading = tuple[float, float, int]  # seconds in all, seconds after the handshake, events


class _Frame(msgspec.Struct):
    type: str
    events: list[msgspec.Raw] = []


_json = msgspec.json.Decoder(_Frame)
_msgpack = msgspec.msgpack.Decoder(_Frame)


async def run(plan: Plan, rep: int, servers: Servers) -> list[Row]:
    session = f"backlog-{rep}"
    await _fill(servers, session)
    n = plan.backlog_reads
    rows: list[Row] = []
    stream = url(servers.daemon, f"/v1/sessions/{session}/stream?cursor=earliest", "ws")
    for codec in ("json", "msgpack"):
        read = functools.partial(_read_daemon, stream, f"livereplay.v1.{codec}")
        rows.append({"server": f"daemon ({codec})", **await _repeat(read, n, servers.daemon)})
    read = functools.partial(_read_peer, url(servers.peer, "/backlog", "ws"))
    rows.append({"server": "bare uvicorn (frame/event)", **await _repeat(read, n, servers.peer)})
    r = redis_peer.client(servers.redis.port)
    try:
        t = now_ns()
        await redis_peer.fill(r, session, [payload(i, t, t) for i in range(RETAINED)])

        async def xrange() -> Reading:
            seconds, count = await redis_peer.xrange_all(r, session)
            return seconds, seconds, count

        rows.append(
            {"server": "redis XRANGE (open conn.)", **await _repeat(xrange, n, servers.redis)}
        )
    finally:
        await r.aclose()
    return rows


async def _fill(servers: Servers, session: str) -> None:
    """2048 + 100 events into the daemon's session and the peer's ring: both keep 2048."""
    t = now_ns()
    bodies = [
        batch_body([payload(start + i, t, t) for i in range(BATCH)])
        for start in range(0, RETAINED + BATCH, BATCH)
    ]
    async with aiohttp.ClientSession() as http:
        for body in bodies:
            await post(http, url(servers.daemon, f"/v1/sessions/{session}/events"), body)
            await post(http, url(servers.peer, "/append"), body)
        async with http.get(url(servers.daemon, f"/v1/sessions/{session}/cursor")) as resp:
            retained = (await resp.json())["retained_events"]
    if retained != RETAINED:
        raise RuntimeError(f"the daemon retained {retained} events, not {RETAINED}")


def _connect(to: str, subprotocol: str | None = None) -> websockets.connect:
    protocols = [websockets.Subprotocol(subprotocol)] if subprotocol else None
    return websockets.connect(to, compression=None, max_size=None, subprotocols=protocols)


async def _read_daemon(to: str, subprotocol: str) -> Reading:
    started = time.perf_counter()
    events = 0
    async with _connect(to, subprotocol) as ws, asyncio.timeout(30):
        opened = time.perf_counter()
        async for message in ws:
            # Text frames are JSON, binary frames MessagePack (the subprotocol asked for).
            frame = (
                _msgpack.decode(message) if isinstance(message, bytes) else _json.decode(message)
            )
            events += len(frame.events)
            if frame.type == "caught_up":
                break
    finished = time.perf_counter()
    return finished - started, finished - opened, events


async def _read_peer(to: str) -> Reading:
    started = time.perf_counter()
    events = 0
    async with _connect(to) as ws, asyncio.timeout(30):
        opened = time.perf_counter()
        async for message in ws:
            if message == "done":
                break
            events += 1
    finished = time.perf_counter()
    return finished - started, finished - opened, events


async def _repeat(read: Callable[[], Awaitable[Reading]], n: int, server: Child) -> Row:
    """One warm-up read, then `n` in a row: median and p90 times, server CPU per read."""
    await read()
    cpu = CpuWindow(server)
    readings = [await read() for _ in range(n)]
    (server_cpu,), _ = cpu.close()
    cpu_s = server_cpu * cpu.wall
    totals = sorted(r[0] for r in readings)
    opened = sorted(r[1] for r in readings)
    counts = sorted({r[2] for r in readings})
    return {
        "events": "/".join(map(str, counts)),
        "total_ms": percentile(totals, 0.5) * 1000,
        "total_p90_ms": percentile(totals, 0.9) * 1000,
        "after_open_ms": percentile(opened, 0.5) * 1000,
        "events_per_s": RETAINED / percentile(totals, 0.5),
        "server_cpu_ms": cpu_s / n * 1000,
    }
