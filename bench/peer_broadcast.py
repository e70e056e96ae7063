"""The bare peer: the least a starlette/uvicorn broadcast can do, to set the daemon beside.

One in-memory session (a 2048-slot ring of raw payloads), the shape of
perf-anchors 2b: an append wakes every subscriber through one shared future,
and each subscriber sends each event as its own frame from the live head. No
cursors, retention rules, gaps frames, metrics, limits or send timeouts.
Appends come over HTTP (`POST /append`, the daemon's batch body) so both
servers are fed the same way. Run by `bench.run` as
`uvicorn bench.peer_broadcast:app`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

RING = 2048


class _EventIn(msgspec.Struct):
    revision: int
    payload: msgspec.Raw


class _BatchIn(msgspec.Struct):
    events: list[_EventIn]


_decoder = msgspec.json.Decoder(_BatchIn)


class Hub:
    """The ring, the count of events ever appended, and the future the next append resolves."""

    def __init__(self) -> None:
        self.ring: deque[bytes] = deque(maxlen=RING)
        self.head = 0
        self.skipped = 0
        self._wake: asyncio.Future[None] | None = None

    def wake(self) -> asyncio.Future[None]:
        if self._wake is None or self._wake.done():
            self._wake = asyncio.get_running_loop().create_future()
        return self._wake

    def append(self, events: list[bytes]) -> None:
        self.ring.extend(events)
        self.head += len(events)
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def after(self, pos: int) -> tuple[list[bytes], int]:
        """Events after `pos` still in the ring, and the new position; skips count once."""
        behind = self.head - pos
        if behind > len(self.ring):
            self.skipped += 1
            behind = len(self.ring)
        # Index from the right end: a deque reaches its ends in O(1), its middle in O(n).
        return [self.ring[i] for i in range(-behind, 0)], self.head


hub = Hub()


async def append(request: Request) -> Response:
    batch = _decoder.decode(await request.body())
    hub.append([bytes(e.payload) for e in batch.events])
    return Response(b'{"accepted":%d}' % len(batch.events), media_type="application/json")


async def _follow(ws: WebSocket, send: Callable[[list[bytes]], Awaitable[None]]) -> None:
    """From the head, hand `send` all that came since its last call, until the reader goes."""
    await ws.accept()
    await ws.send_text('{"type":"hello"}')
    gone: asyncio.Future[Any] = asyncio.ensure_future(ws.receive())
    pos = hub.head
    try:
        while not gone.done():
            if pos == hub.head:
                wake: asyncio.Future[Any] = hub.wake()
                await asyncio.wait({wake, gone}, return_when=asyncio.FIRST_COMPLETED)
                continue
            events, pos = hub.after(pos)
            await send(events)
    except Exception:
        return
    finally:
        gone.cancel()


async def subscribe(ws: WebSocket) -> None:
    """Live events from the head, one frame each, until the reader goes."""

    async def each(events: list[bytes]) -> None:
        for data in events:
            await ws.send_bytes(data)

    await _follow(ws, each)


_FRAME_HEAD = b'{"type":"events","events":['


async def frames(ws: WebSocket) -> None:
    """Live events from the head, all that came since the last send as one frame of the
    daemon's shape: the least a server can do for the readers' ceiling."""

    async def together(events: list[bytes]) -> None:
        body = b",".join(b'{"payload":' + e + b"}" for e in events)
        await ws.send_bytes(_FRAME_HEAD + body + b"]}")

    await _follow(ws, together)


async def backlog(ws: WebSocket) -> None:
    """The whole ring, one frame per event, then a `done` text frame."""
    await ws.accept()
    events, _ = hub.after(max(0, hub.head - RING))
    for data in events:
        await ws.send_bytes(data)
    await ws.send_text("done")
    await ws.receive()


async def healthz(request: Request) -> Response:
    return Response(b'{"status":"ok","skipped":%d}' % hub.skipped, media_type="application/json")


app = Starlette(
    routes=[
        Route("/append", append, methods=["POST"]),
        WebSocketRoute("/sub", subscribe),
        WebSocketRoute("/frames", frames),
        WebSocketRoute("/backlog", backlog),
        Route("/healthz", healthz, methods=["GET"]),
    ]
)
