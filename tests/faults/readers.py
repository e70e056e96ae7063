"""Readers for the fault suite: raw streams that reconnect with their cursor and record
every frame into a `History`.

Deliberately not the library's `subscribe()`: it drops duplicates as a safety net,
which would hide exactly the daemon bugs this suite looks for. The transport is
pluggable (one class per transport); every transport yields the same decoded frame
dicts, so the same checker judges WebSocket, SSE or NDJSON readers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncGenerator
from typing import Protocol
from urllib.parse import quote

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from tests.faults.history import Frame, History, cursor_point
from tests.support.httpstream import NDJSON, SSE, frame_of, ndjson_frames, sse_messages

# Closes and handshake answers after which a reader tries again (PROTOCOL.md 7).
RETRY_CLOSES = frozenset({1001, 1006, 1011, 1012, 1013})
RETRY_STATUSES = frozenset({429, 503})

Frames = AsyncGenerator[Frame, None]


class Retry(Exception):
    """The connection ended in a way a reader recovers from: reconnect with the cursor."""


class Stop(Exception):
    """The daemon refused the reader for good (a 44xx close, a 4xx handshake)."""


class Transport(Protocol):
    """One connection: the frames of a stream read after `cursor`, until it ends.

    Ends by raising `Retry` or `Stop`; a normal end of the frames counts as `Retry`.
    """

    def frames(self, base_url: str, session_id: str, cursor: str) -> Frames: ...


def stream_path(session_id: str, cursor: str) -> str:
    # `+` and `@` may appear in a session id, and `+` would read as a space in a query.
    return f"/v1/sessions/{quote(session_id, safe='')}/stream?cursor={quote(cursor, safe=':')}"


class WebSocketTransport:
    """The JSON WebSocket stream (subprotocol `livereplay.v1.json`)."""

    subprotocol = Subprotocol("livereplay.v1.json")

    def __init__(self, open_timeout: float = 5.0, ping_interval: float = 5.0) -> None:
        self.open_timeout = open_timeout
        self.ping_interval = ping_interval

    async def frames(self, base_url: str, session_id: str, cursor: str) -> Frames:
        url = base_url.replace("http://", "ws://", 1) + stream_path(session_id, cursor)
        try:
            async with connect(
                url,
                subprotocols=[self.subprotocol],
                open_timeout=self.open_timeout,
                ping_interval=self.ping_interval,
                ping_timeout=self.ping_interval * 2,
                close_timeout=1,
                max_size=None,
                compression=None,
                proxy=None,
            ) as ws:
                try:
                    async for message in ws:
                        yield json.loads(message)
                except ConnectionClosed:
                    pass
                code = ws.close_code if ws.close_code is not None else 1006
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in RETRY_STATUSES:
                raise Retry(f"HTTP {status}") from None
            raise Stop(f"handshake answered HTTP {status}") from None
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise Retry(f"connect: {type(exc).__name__}") from None
        if code in RETRY_CLOSES:
            raise Retry(f"close {code}")
        raise Stop(f"closed with {code}")


class _HttpTransport:
    """A reader stream over plain HTTP; subclasses say how a response becomes frames."""

    accept = ""

    def __init__(self, open_timeout: float = 5.0, read_timeout: float = 40.0) -> None:
        # Longer than a heartbeat period: a silent connection is a dead one.
        self.timeout = httpx.Timeout(read_timeout, connect=open_timeout)

    def headers(self) -> dict[str, str]:
        return {"Accept": self.accept}

    def url_cursor(self, cursor: str) -> str:
        return cursor

    def parse(self, response: httpx.Response) -> Frames:
        raise NotImplementedError

    async def frames(self, base_url: str, session_id: str, cursor: str) -> Frames:
        try:
            async with (
                httpx.AsyncClient(timeout=self.timeout, trust_env=False) as client,
                client.stream(
                    "GET",
                    base_url + stream_path(session_id, self.url_cursor(cursor)),
                    headers=self.headers(),
                ) as response,
            ):
                status = response.status_code
                if status in RETRY_STATUSES:
                    raise Retry(f"HTTP {status}")
                if status != 200:
                    raise Stop(f"answered HTTP {status}")
                async with contextlib.aclosing(self.parse(response)) as frames:
                    async for frame in frames:
                        yield frame
        except (httpx.TransportError, OSError) as exc:
            raise Retry(f"HTTP stream: {type(exc).__name__}") from None


class SSETransport(_HttpTransport):
    """Server-Sent Events, as a browser's `EventSource` reads them: its URL never
    changes (the cursor of the first connection), and it reconnects with the last `id:`
    it was sent as `Last-Event-ID`, which wins over the URL's cursor. So the ids alone
    say where this reader resumes: a wrong one shows as a duplicate or a hole.
    """

    accept = SSE

    def __init__(self, open_timeout: float = 5.0, read_timeout: float = 40.0) -> None:
        super().__init__(open_timeout, read_timeout)
        self.last_event_id: str | None = None
        self._url_cursor: str | None = None

    def url_cursor(self, cursor: str) -> str:
        if self._url_cursor is None:
            self._url_cursor = cursor
        return self._url_cursor

    def headers(self) -> dict[str, str]:
        headers = super().headers()
        if self.last_event_id:
            headers["Last-Event-ID"] = self.last_event_id
        return headers

    async def parse(self, response: httpx.Response) -> Frames:
        async for message in sse_messages(response):
            self.last_event_id = message.id
            yield frame_of(message)


class NDJSONTransport(_HttpTransport):
    """One frame object per line, exactly as over WebSocket (JSON)."""

    accept = NDJSON

    def parse(self, response: httpx.Response) -> Frames:
        return ndjson_frames(response)


TRANSPORTS: dict[str, type[WebSocketTransport | SSETransport | NDJSONTransport]] = {
    "ws": WebSocketTransport,
    "sse": SSETransport,
    "ndjson": NDJSONTransport,
}


class Reader:
    """One host: follows a session, reconnecting with its last cursor after any loss.

    The cursor is the last event's, or a gap's `latest_cursor` (`earliest` when that
    is null). Backoff is small, jittered and exponential, reset by each `hello`.
    """

    def __init__(
        self,
        name: str,
        base_url: str,
        session_id: str,
        *,
        cursor: str = "earliest",
        transport: Transport | None = None,
        backoff_base_s: float = 0.05,
        backoff_cap_s: float = 1.0,
    ) -> None:
        self.name = name
        self.base_url = base_url
        self.session_id = session_id
        self.cursor = cursor
        self.transport = transport or WebSocketTransport()
        self.history = History(name)
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.retries: list[str] = []  # why each connection ended (the last few)
        self.stopped: str | None = None
        self.hellos = 0  # connections that got as far as a `hello`
        self._attempt = 0
        self._task: asyncio.Task[None] | None = None

    # -- running ---------------------------------------------------------------

    def start(self) -> Reader:
        self._task = asyncio.create_task(self._run(), name=f"reader-{self.name}")
        return self

    async def stop(self) -> None:
        """Stop reading (a pause: `start` again resumes from the same cursor)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        while True:
            self.history.connected()
            try:
                frames = self.transport.frames(self.base_url, self.session_id, self.cursor)
                async with contextlib.aclosing(frames):
                    async for frame in frames:
                        self._handle(frame)
                raise Retry("the stream ended")
            except Retry as exc:
                self._note(str(exc))
            except Stop as exc:
                self.stopped = str(exc)
                self.history.failed(str(exc))
                return
            ceiling = min(self.backoff_cap_s, self.backoff_base_s * 2 ** min(self._attempt, 10))
            self._attempt += 1
            await asyncio.sleep(random.uniform(0, ceiling))

    def _note(self, why: str) -> None:
        self.retries.append(why)
        del self.retries[:-10]

    def _handle(self, frame: Frame) -> None:
        self.history.feed(frame)
        kind = frame.get("type")
        if kind == "hello":
            self.hellos += 1
            self._attempt = 0
        elif kind == "events":
            if frame["events"]:
                self.cursor = frame["events"][-1]["cursor"]
        elif kind == "gap":
            self.cursor = frame.get("latest_cursor") or "earliest"

    # -- observing -------------------------------------------------------------

    def at(self, incarnation: str, position: int) -> bool:
        """The reader's cursor has reached (incarnation, position)."""
        point = cursor_point(self.cursor)
        return point is not None and point[0] == incarnation and point[1] >= position

    def where(self) -> str:
        why = f", stopped: {self.stopped}" if self.stopped else ""
        return f"{self.name} at {self.cursor} (last closes {self.retries[-3:]}{why})"


async def wait_caught_up(
    readers: list[Reader], incarnation: str, position: int, timeout: float
) -> None:
    """Until every reader's cursor is at the session's tail; a clear failure otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        behind = [r for r in readers if not r.at(incarnation, position)]
        if not behind:
            return
        stopped = [r for r in behind if r.stopped]
        if stopped or time.monotonic() > deadline:
            shown = "\n  ".join(r.where() for r in (stopped or behind)[:5])
            raise AssertionError(
                f"{len(behind)} of {len(readers)} readers did not reach the tail "
                f"{incarnation[:8]}:{position} within {timeout:.0f} s:\n  {shown}"
            )
        await asyncio.sleep(0.05)
