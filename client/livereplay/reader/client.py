"""A host's reader: one session's events, live, across every disconnect (PROTOCOL.md 4 and 7).

`subscribe()` keeps one WebSocket to the daemon's stream and yields what it
says: events, gaps and `caught_up`. When the connection is lost (a close with
1001, 1006, 1011, 1012 or 1013, a refused connect, or a heartbeat that stops coming,
as from a stalled daemon that the OS does not report) it reconnects with
full-jitter exponential backoff and resumes after the last event it yielded, or
after the last gap's `latest_cursor`. The daemon guarantees no duplicate within
one connection; dropping events at or below the last yielded position of the
same incarnation guarantees it across connections. A close with 44xx is final:
it raises `ReaderRefused`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.parse
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Final, Literal

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.typing import Subprotocol

from livereplay.backoff import Backoff
from livereplay.protocol.constants import JSON_SUBPROTOCOL, MSGPACK_SUBPROTOCOL, MiB
from livereplay.protocol.cursor import Cursor, parse_cursor
from livereplay.protocol.frames import (
    CaughtUpFrame,
    ErrorFrame,
    EventsFrame,
    Frame,
    GapFrame,
    HelloFrame,
    json_frame_decoder,
    msgpack_frame_decoder,
)
from livereplay.protocol.records import EventOut
from livereplay.protocol.rules import CaughtUp, Gap

# Browsers cannot send headers on a WebSocket; this client sends the token as a header.
TOKEN_HEADER: Final = "Authorization"

Item = EventOut | Gap | CaughtUp
ReaderStatus = Literal["connecting", "connected", "caught_up", "reconnecting", "closed"]


class ReaderError(Exception):
    """The reader stopped for good; iteration ends with this."""


class ReaderRefused(ReaderError):
    """The daemon refused this reader (close 44xx, or an HTTP 4xx on connect).

    Reconnecting would get the same answer: fix the cursor, the session id or
    the token. `close_code` is the WebSocket close code (None for an HTTP
    refusal, then `http_status` is set); `code` is the daemon's error code.
    """

    def __init__(
        self,
        message: str,
        *,
        close_code: int | None = None,
        http_status: int | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.close_code = close_code
        self.http_status = http_status
        self.code = code


class ReaderProtocolError(ReaderError):
    """The daemon sent a frame that protocol version 1 does not have."""


@dataclass(frozen=True, slots=True)
class ReaderOptions:
    """Timings and bounds of one reader."""

    backoff_base_s: float = 0.1
    backoff_cap_s: float = 10.0
    # A connection that lasted this long was healthy: the next reconnect starts over.
    healthy_s: float = 10.0
    connect_timeout_s: float = 10.0
    # Silence longer than heartbeat_s * this (and at least heartbeat_s + 1 s) is a dead daemon.
    heartbeat_tolerance: float = 2.0
    # The largest frame accepted; the daemon's frames are bounded by its own settings.
    max_frame_bytes: int = 64 * MiB
    msgpack: bool = False

    def __post_init__(self) -> None:
        if self.backoff_base_s <= 0 or self.backoff_cap_s < self.backoff_base_s:
            raise ValueError("backoff needs 0 < backoff_base_s <= backoff_cap_s")
        if self.heartbeat_tolerance < 1 or self.connect_timeout_s <= 0 or self.healthy_s < 0:
            raise ValueError("heartbeat_tolerance >= 1, connect_timeout_s > 0, healthy_s >= 0")

    def silence_limit(self, heartbeat_s: float) -> float:
        return max(heartbeat_s * self.heartbeat_tolerance, heartbeat_s + 1.0)


@dataclass(slots=True)
class ReaderStats:
    connects: int = 0  # WebSocket connections opened
    failed_connects: int = 0
    reconnects: int = 0  # connections opened after the first
    heartbeat_timeouts: int = 0
    duplicates_dropped: int = 0  # events at or below the last yielded position (a safety net)
    events: int = 0
    gaps: int = 0


class ReconnectPolicy:
    """When to try again: full-jitter backoff, reset once a connection has stayed up a while."""

    def __init__(self, options: ReaderOptions) -> None:
        self.backoff = Backoff(options.backoff_base_s, options.backoff_cap_s)
        self.healthy_s = options.healthy_s
        self._up_since: float | None = None

    def connected(self, now: float) -> None:
        self._up_since = now

    def delay(self, now: float) -> float:
        """The wait before the next attempt, after a loss or a failed connect at `now`."""
        if self._up_since is not None and now - self._up_since >= self.healthy_s:
            self.backoff.reset()
        self._up_since = None
        return self.backoff.next()


# -- frames ------------------------------------------------------------------


def _cursor_or_none(text: str | None) -> Cursor | None:
    return None if text is None else parse_cursor(text)


def stream_url(url: str, session_id: str, cursor: str) -> str:
    """The stream endpoint under a daemon's base URL (http(s):// or ws(s)://)."""
    base = url.rstrip("/")
    for http, ws in (("http://", "ws://"), ("https://", "wss://")):
        if base.startswith(http):
            base = ws + base[len(http) :]
    session = urllib.parse.quote(session_id, safe="")
    return f"{base}/v1/sessions/{session}/stream?cursor={urllib.parse.quote(cursor, safe='')}"


class _Lost(Exception):
    """This connection is over; reconnect."""


class Reader:
    """An async iterator of one session's events, gaps and `caught_up`, resuming by itself.

    `cursor` is where a new connection would resume: after the last yielded
    event, after the last gap, or the start given. Iteration ends only by
    `aclose()` (or leaving `async with`), or with a `ReaderError`.
    """

    def __init__(
        self,
        url: str,
        session_id: str,
        cursor: str,
        *,
        token: str | None = None,
        options: ReaderOptions | None = None,
        on_status: Callable[[ReaderStatus, str | None], None] | None = None,
    ) -> None:
        self.url = url
        self.session_id = session_id
        self.cursor = cursor
        self.options = options or ReaderOptions()
        self.status: ReaderStatus = "connecting"
        self.stats = ReaderStats()
        self._headers = {TOKEN_HEADER: f"Bearer {token}"} if token else {}
        self._on_status = on_status
        # (incarnation, position) of the last yielded event or gap resume point:
        # events at or below it in the same incarnation are duplicates.
        self._last: tuple[str, int] | None = None
        self._error: ErrorFrame | None = None
        self._items = self._run()

    def __aiter__(self) -> Reader:
        return self

    async def __anext__(self) -> Item:
        try:
            return await self._items.__anext__()
        except ReaderError as exc:
            self._set_status("closed", str(exc))
            raise

    async def aclose(self) -> None:
        await self._items.aclose()
        self._set_status("closed", None)

    async def __aenter__(self) -> Reader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _set_status(self, status: ReaderStatus, reason: str | None) -> None:
        if status == self.status and reason is None:
            return
        self.status = status
        if self._on_status is not None:
            self._on_status(status, reason)

    async def _run(self) -> AsyncGenerator[Item, None]:
        policy = ReconnectPolicy(self.options)
        ever_connected = False
        while True:
            try:
                conn = await self._connect()
            except _Lost as lost:
                self.stats.failed_connects += 1
                await self._pause(policy, str(lost))
                continue
            polite = True
            self.stats.connects += 1
            if ever_connected:
                self.stats.reconnects += 1
            ever_connected = True
            try:
                first = await self._receive(conn, self.options.connect_timeout_s)
                if isinstance(first, ErrorFrame):
                    self._error = first
                    await self._receive(conn, self.options.connect_timeout_s)  # the 44xx close
                if not isinstance(first, HelloFrame):
                    raise ReaderProtocolError(f"the first frame was not hello: {first!r}")
                self._on_hello(first)
                policy.connected(time.monotonic())
                self._set_status("connected", None)
                silence = self.options.silence_limit(first.heartbeat_s)
                while True:
                    frame = await self._receive(conn, silence)
                    for item in self._on_frame(frame):
                        yield item
            except _Lost as lost:
                polite = False
                reason = str(lost)
            finally:
                await _close(conn, polite)
            await self._pause(policy, reason)

    async def _pause(self, policy: ReconnectPolicy, reason: str) -> None:
        self._set_status("reconnecting", reason)
        await asyncio.sleep(policy.delay(time.monotonic()))

    async def _connect(self) -> ClientConnection:
        options = self.options
        subprotocol = MSGPACK_SUBPROTOCOL if options.msgpack else JSON_SUBPROTOCOL
        url = stream_url(self.url, self.session_id, self.cursor)
        self._error = None
        try:
            return await connect(
                url,
                subprotocols=[Subprotocol(subprotocol)],
                additional_headers=self._headers,
                open_timeout=options.connect_timeout_s,
                close_timeout=1.0,
                # The heartbeat watchdog replaces client pings.
                ping_interval=None,
                max_size=options.max_frame_bytes,
                compression=None,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if 400 <= status < 500 and status not in (408, 429):
                raise ReaderRefused(
                    f"the daemon refused the connection: HTTP {status}", http_status=status
                ) from None
            raise _Lost(f"HTTP {status}") from None
        except InvalidURI:
            raise
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise _Lost(f"connect failed: {type(exc).__name__}: {exc}") from None

    async def _receive(self, conn: ClientConnection, timeout: float) -> Frame:  # noqa: ASYNC109
        try:
            async with asyncio.timeout(timeout):
                message = await conn.recv()
        except TimeoutError:
            self.stats.heartbeat_timeouts += 1
            raise _Lost(f"no frame for {timeout:g} s (heartbeat timeout)") from None
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else 1006
            if 4400 <= code < 4500:
                error = self._error
                raise ReaderRefused(
                    f"the daemon refused the reader (close {code})"
                    + (f": {error.code}: {error.message}" if error else ""),
                    close_code=code,
                    code=error.code if error else None,
                ) from None
            raise _Lost(f"closed {code}") from None
        try:
            if isinstance(message, str):
                return json_frame_decoder.decode(message)
            return msgpack_frame_decoder.decode(message)
        except msgspec.DecodeError as exc:
            raise ReaderProtocolError(f"a frame protocol 1 does not have: {exc}") from None

    def _on_hello(self, hello: HelloFrame) -> None:
        if hello.cursor is not None:
            self.cursor = hello.cursor  # a word resolved to where reading starts

    def _on_frame(self, frame: Frame) -> list[Item]:
        """Update the resume point for one frame; the items to yield."""
        if isinstance(frame, EventsFrame):
            return self._on_events(frame.events)
        if isinstance(frame, GapFrame):
            gap = Gap(
                frame.session_id,
                frame.requested_cursor,
                _cursor_or_none(frame.latest_cursor),
                frame.latest_revision,
                frame.reason,
                frame.detail,
                _cursor_or_none(frame.earliest_cursor),
            )
            # Resume strictly after the gap: the host reloads its state from its own source.
            latest = gap.latest_cursor
            self._last = None if latest is None else (latest.incarnation, latest.position)
            self.cursor = frame.latest_cursor or "earliest"
            self.stats.gaps += 1
            return [gap]
        if isinstance(frame, CaughtUpFrame):
            if frame.cursor is not None:
                self.cursor = frame.cursor
            elif self.cursor == "latest":
                # The session does not exist yet: everything it gets is new, so a
                # reconnect must not skip what was appended while disconnected.
                self.cursor = "earliest"
            self._set_status("caught_up", None)
            return [CaughtUp(_cursor_or_none(frame.cursor))]
        if isinstance(frame, ErrorFrame):
            self._error = frame  # the 44xx close follows
            return []
        if isinstance(frame, HelloFrame):
            raise ReaderProtocolError("a second hello on one connection")
        return []  # heartbeat: its arrival fed the watchdog

    def _on_events(self, events: list[EventOut]) -> list[Item]:
        fresh: list[Item] = []
        last = self._last
        for event in events:
            if (
                last is not None
                and event.replay_incarnation_id == last[0]
                and event.position <= last[1]
            ):
                self.stats.duplicates_dropped += 1
                continue
            last = (event.replay_incarnation_id, event.position)
            self.cursor = event.cursor
            fresh.append(event)
        self._last = last
        self.stats.events += len(fresh)
        return fresh


async def _close(conn: ClientConnection, polite: bool) -> None:
    """Close politely (bounded by close_timeout) unless the daemon went silent."""
    if polite:
        with contextlib.suppress(Exception):
            await conn.close()
    conn.transport.abort()


def subscribe(
    url: str,
    session_id: str,
    cursor: str = "earliest",
    *,
    token: str | None = None,
    options: ReaderOptions | None = None,
    on_status: Callable[[ReaderStatus, str | None], None] | None = None,
) -> Reader:
    """Read `session_id` from the daemon at `url`, starting after `cursor`.

    `cursor` is a cursor of this session, `earliest` or `latest`; a bad one is
    refused by the daemon and raises `ReaderRefused` on the first iteration.
    `token` is sent as a bearer token. `on_status(status, reason)` is told of
    each change of connection state.
    """
    return Reader(url, session_id, cursor, token=token, options=options, on_status=on_status)


__all__ = [
    "Item",
    "Reader",
    "ReaderError",
    "ReaderOptions",
    "ReaderProtocolError",
    "ReaderRefused",
    "ReaderStats",
    "ReaderStatus",
    "ReconnectPolicy",
    "subscribe",
]
