"""One reader's stream, whatever carries it: WebSocket (stream.py) or HTTP (httpstream.py).

A thin I/O loop around `ReadProgress`: it reads a snapshot after the reader's
position, sends the frames it answers, and when caught up joins the
session's live group (broadcast.py) or waits for the session's next change. The
transports differ only in how a frame's bytes go out (`Connection.deliver`) and
in their codec; every send has a timeout, after which the connection is aborted.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.types import Receive

from livereplay.protocol import Cursor, Gap, ReadProgress, StartWord
from livereplay.protocol.clock import now_ms
from livereplay.protocol.frames import (
    CaughtUpFrame,
    Frame,
    HeartbeatFrame,
    frame_type,
    gap_frame,
    hello_frame,
    text,
)
from livereplay.protocol.rules import CaughtUp, Events, Hello, Output

from . import sockets
from .broadcast import LiveReader
from .codec import Codec
from .logs import get_logger
from .state import AppState
from .store import StoreUnavailable

log = get_logger("livereplay.stream")

# A busy reader yields to the event loop after this many backlog pages.
PAGES_PER_YIELD = 4


class ReaderGone(Exception):
    """The reader disconnected or was cut off; stop serving it."""


class Connection:
    """One reader's connection: encodes frames for its codec and sends them with a timeout.

    `deliver` sends one encoded frame (raising `OSError` or `RuntimeError` once the
    connection is gone); `abort` drops the connection at once.
    """

    def __init__(
        self,
        state: AppState,
        codec: Codec,
        session_id: str,
        deliver: Callable[[bytes], Awaitable[None]],
        abort: Callable[[], object],
    ) -> None:
        self.state = state
        self.codec = codec
        self.session_id = session_id
        self._deliver = deliver
        self._abort = abort
        self.last_sent = asyncio.get_running_loop().time()

    async def send_raw(self, data: bytes, frame_type: str) -> None:
        try:
            async with asyncio.timeout(self.state.settings.send_timeout_s):
                await self._deliver(data)
        except TimeoutError:
            self.state.metrics.reader_cutoffs.inc()
            log.warning("reader_cut_off", reason="send_timeout")
            # A close would wait for this peer to drain what is buffered: it never will.
            self._abort()
            raise ReaderGone from None
        except (OSError, RuntimeError):
            raise ReaderGone from None
        self.last_sent = asyncio.get_running_loop().time()
        metrics = self.state.metrics
        metrics.frames_by_type[frame_type].inc()
        metrics.bytes_sent.inc(len(data))

    async def send(self, frame: Frame) -> None:
        await self.send_raw(self.codec.encode(frame), frame_type(frame))


async def follow(
    conn: Connection,
    start: Cursor | StartWord,
    lost: asyncio.Future[Any],
    socket: sockets.Socket | None,
) -> bool:
    """Serve the reader until it is gone or the daemon stops; False when it ended on a
    failure (the backend unavailable, a bug), which the caller reports its own way."""
    state = conn.state
    session_id = conn.session_id
    state.store.changes.watch(session_id)
    state.metrics.readers.inc()
    try:
        await _serve(conn, start, lost, socket)
    except ReaderGone:
        pass
    except StoreUnavailable:
        # The reader reconnects with its cursor once the backend is back.
        log.warning("reader_closed", session_id=session_id, reason="store_unavailable")
        return False
    except Exception:
        log.exception("reader_failed", session_id=session_id)
        return False
    finally:
        state.metrics.readers.dec()
        state.store.changes.unwatch(session_id)
    return True


async def _serve(
    conn: Connection,
    start: Cursor | StartWord,
    lost: asyncio.Future[Any],
    socket: sockets.Socket | None,
) -> None:
    state = conn.state
    session_id = conn.session_id
    settings = state.settings
    store = state.store
    loop = asyncio.get_running_loop()
    coalesce_s = settings.live_coalesce_ms / 1000
    sub = ReadProgress(session_id, start, grace_until_ms=state.grace_until_ms())
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
                    await first_of(loop, (reader.released, lost), math.inf)
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
            if await first_of(loop, (change, lost), timeout):
                break
            if loop.time() >= conn.last_sent + settings.heartbeat_s:
                await conn.send(HeartbeatFrame(text(head)))
            else:
                break  # the wait ended: read again
        # Under a steady stream, gather what arrives within the coalescing window into
        # one frame: one write per reader per window instead of one per event.
        delay = conn.last_sent + coalesce_s - loop.time()
        if delay > 0 and not lost.done():
            await first_of(loop, (lost,), delay)


async def first_of(
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
        await conn.send(gap_frame(output))
    elif isinstance(output, CaughtUp):
        await conn.send(CaughtUpFrame(text(output.cursor)))
    elif isinstance(output, Hello):
        await conn.send(hello_frame(conn.session_id, output.cursor, output.head, heartbeat_s))


@contextlib.asynccontextmanager
async def noticing_close(receive: Receive, closed: str) -> AsyncIterator[asyncio.Task[None]]:
    """Without our socket handle (another server), receiving is how a close is noticed:
    a task that receives until a message of type `closed`, as the `lost` future."""

    async def drain() -> None:
        with contextlib.suppress(Exception):
            while (await receive())["type"] != closed:
                pass

    task = asyncio.create_task(drain())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
