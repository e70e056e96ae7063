"""The reader WebSocket: backlog, `caught_up`, then live events, with gaps as frames.

The handler is a thin I/O loop around `Subscription`: it reads a snapshot after
the reader's position, sends what the subscription answers, and when caught up
waits for the session's next change. Every send has a timeout, and a receive
task notices a closed socket (or uvicorn's 1012 on shutdown) at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from livereplay import (
    Cursor,
    Gap,
    MalformedCursor,
    StartWord,
    Subscription,
    WrongSession,
    parse_start,
    valid_session_id,
)
from livereplay._rules import CaughtUp, Events, Hello, Output

from . import frames, sockets
from .admission import admit, close_quietly
from .broadcast import LiveReader
from .clock import now_ms
from .frames import Codec
from .logs import get_logger
from .state import AppState
from .store import StoreUnavailable

log = get_logger("livereplay.stream")

CLOSE_CLIENT_FAULT = 4400
CLOSE_INTERNAL = 1011
# A busy reader yields to the event loop after this many backlog pages.
PAGES_PER_YIELD = 4


class ReaderGone(Exception):
    """The reader disconnected or was cut off; stop serving it."""


class Connection:
    """One reader socket: encodes frames for its codec and sends them with a timeout."""

    def __init__(self, ws: WebSocket, state: AppState, codec: Codec) -> None:
        self.ws = ws
        self.state = state
        self.codec = codec
        self.last_sent = asyncio.get_running_loop().time()

    async def send_raw(self, data: bytes, frame_type: str) -> None:
        message: dict[str, Any] = {"type": "websocket.send"}
        if self.codec.text:
            message["text"] = data.decode()
        else:
            message["bytes"] = data
        try:
            async with asyncio.timeout(self.state.settings.send_timeout_s):
                await self.ws.send(message)
        except TimeoutError:
            self.state.metrics.reader_cutoffs.inc()
            log.warning("reader_cut_off", reason="send_timeout")
            # A close would wait for this peer to drain what is buffered: it never will.
            sockets.abort(self.ws.scope)
            raise ReaderGone from None
        except (WebSocketDisconnect, OSError, RuntimeError):
            raise ReaderGone from None
        self.last_sent = asyncio.get_running_loop().time()
        metrics = self.state.metrics
        metrics.frames_by_type[frame_type].inc()
        metrics.bytes_sent.inc(len(data))

    async def send(self, frame: dict[str, Any]) -> None:
        await self.send_raw(self.codec.encode(frame), frame["type"])


async def stream(ws: WebSocket) -> None:
    state: AppState = ws.app.state.livereplay
    codec = frames.choose_codec(list(ws.scope.get("subprotocols", [])))
    conn = Connection(ws, state, codec)
    session_id: str = ws.path_params["session_id"]

    async def send_error(code: str, message: str) -> None:
        await conn.send(frames.error(code, message))

    client = await admit(
        ws,
        state,
        codec.subprotocol,
        lambda token: state.auth.check_reader(token, session_id),
        send_error,
    )
    if client is None:
        return
    try:
        await _stream(conn, session_id)
    finally:
        state.connections.release(client)


async def _stream(conn: Connection, session_id: str) -> None:
    state = conn.state
    ws = conn.ws
    try:
        start = _parse_request(session_id, ws.query_params.get("cursor"))
    except ClientFault as fault:
        state.metrics.connections_refused.labels(fault.code).inc()
        with contextlib.suppress(ReaderGone):
            await conn.send(frames.error(fault.code, fault.message))
        await close_quietly(ws, CLOSE_CLIENT_FAULT)
        return

    socket = sockets.socket_of(ws.scope)
    receiver: asyncio.Task[None] | None = None
    lost: asyncio.Future[Any]
    if socket is not None:
        socket.ignore_incoming = True  # readers send nothing the daemon needs
        lost = socket.lost
    else:  # a server without our socket handle: receiving is how a close is noticed
        lost = receiver = asyncio.create_task(_drain_incoming(ws))
    state.store.changes.watch(session_id)
    state.metrics.readers.inc()
    try:
        await _serve(conn, session_id, start, lost, socket)
    except ReaderGone:
        pass
    except StoreUnavailable:
        # The reader reconnects with its cursor once the backend is back.
        log.warning("reader_closed", session_id=session_id, reason="store_unavailable")
        await close_quietly(ws, CLOSE_INTERNAL)
    except Exception:
        log.exception("reader_failed", session_id=session_id)
        await close_quietly(ws, CLOSE_INTERNAL)
    finally:
        state.metrics.readers.dec()
        state.store.changes.unwatch(session_id)
        if receiver is not None:
            receiver.cancel()
            with contextlib.suppress(BaseException):
                await receiver


class ClientFault(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _parse_request(session_id: str, cursor: str | None) -> Cursor | StartWord:
    if not valid_session_id(session_id):
        raise ClientFault(
            "invalid_session_id", "a session id is 1..256 characters of A-Z a-z 0-9 . _ ~ : @ + -"
        )
    if cursor is None:
        raise ClientFault("malformed_cursor", "the `cursor` query parameter is required")
    try:
        return parse_start(cursor, session_id)
    except (MalformedCursor, WrongSession) as exc:
        raise ClientFault(exc.code, str(exc)) from None


async def _drain_incoming(ws: WebSocket) -> None:
    """Readers send nothing we need; receiving is how a close is noticed."""
    with contextlib.suppress(Exception):
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return


async def _serve(
    conn: Connection,
    session_id: str,
    start: Cursor | StartWord,
    lost: asyncio.Future[Any],
    socket: sockets.Socket | None,
) -> None:
    state = conn.state
    settings = state.settings
    store = state.store
    loop = asyncio.get_running_loop()
    coalesce_s = settings.live_coalesce_ms / 1000
    sub = Subscription(session_id, start, grace_until_ms=state.grace_until_ms())
    shared = socket if socket is not None and socket.shares_frames else None
    head: Cursor | None = None
    backlog: int | None = 0  # events sent before caught_up; None once it is sent
    pages = 0
    while not lost.done():
        change = store.changes.next_change(session_id)
        snapshot = await store.snapshot(
            session_id, sub.after(), settings.max_frame_events, settings.max_frame_bytes
        )
        if snapshot.head is not None:
            head = snapshot.head.tail_cursor
        for output in sub.feed(snapshot, now_ms()):
            await _send_output(conn, output, settings.heartbeat_s)
            if backlog is not None:
                if isinstance(output, Events):
                    backlog += len(output.events)
                elif isinstance(output, CaughtUp):
                    state.metrics.backlog_events.observe(backlog)
                    backlog = None
        if sub.more:
            pages += 1
            if pages % PAGES_PER_YIELD == 0:
                await asyncio.sleep(0)
            continue
        if shared is not None and sub.caught_up and sub.cursor is not None and not lost.done():
            # At the live edge: the session's group serves it from here, with every
            # other reader there, until it lets it go (slow, a gap to tell, closing).
            reader = LiveReader(session_id, shared, conn.codec, loop.create_future())
            if state.broadcaster.join(reader, sub.cursor):
                try:
                    await _first_of(loop, (reader.released, lost), math.inf)
                finally:
                    state.broadcaster.leave(reader)
                if lost.done():
                    return
                sub.resume_after(reader.released.result())
                conn.last_sent = loop.time()
                continue
        # Caught up, or waiting for a writer to re-send its window: wait for a change, a
        # disconnect, the end of that wait, or the moment a heartbeat is due.
        while True:
            timeout = conn.last_sent + settings.heartbeat_s - loop.time()
            if sub.wait_until_ms:
                timeout = min(timeout, (sub.wait_until_ms - now_ms()) / 1000)
            if await _first_of(loop, (change, lost), timeout):
                break
            if loop.time() >= conn.last_sent + settings.heartbeat_s:
                await conn.send(frames.heartbeat(head))
            else:
                break  # the wait ended: read again
        # Under a steady stream, gather what arrives within the coalescing window into
        # one frame: one write per reader per window instead of one per event.
        delay = conn.last_sent + coalesce_s - loop.time()
        if delay > 0 and not lost.done():
            await _first_of(loop, (lost,), delay)


async def _first_of(
    loop: asyncio.AbstractEventLoop, futures: tuple[asyncio.Future[Any], ...], seconds: float
) -> bool:
    """Wait until one of the futures is done (True) or `seconds` pass (False).

    A leaner `asyncio.wait`: it runs once per reader per wake-up on the fan-out path.
    """
    if any(f.done() for f in futures):
        return True
    waiter: asyncio.Future[None] = loop.create_future()

    def wake(_: object = None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    for f in futures:
        f.add_done_callback(wake)
    timer = loop.call_later(max(seconds, 0.0), wake) if seconds != math.inf else None
    try:
        await waiter
    finally:
        if timer is not None:
            timer.cancel()
        for f in futures:
            f.remove_done_callback(wake)
    return any(f.done() for f in futures)


async def _send_output(conn: Connection, output: Output, heartbeat_s: float) -> None:
    metrics = conn.state.metrics
    if isinstance(output, Events):
        await conn.send_raw(conn.codec.events(output.events), "events")
        metrics.events_sent.inc(len(output.events))
    elif isinstance(output, Gap):
        metrics.gaps.labels(output.reason.value, output.detail.value).inc()
        await conn.send(frames.gap(output))
    elif isinstance(output, CaughtUp):
        await conn.send(frames.caught_up(output.cursor))
    elif isinstance(output, Hello):
        await conn.send(
            frames.hello(conn.ws.path_params["session_id"], output.cursor, output.head, heartbeat_s)
        )
