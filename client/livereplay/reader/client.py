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

The rules live in `ReaderMachine` (reader.machine); this module is its I/O shell:
connecting through a `Transport` (reader.transport), timeouts and the
heartbeat watchdog, backoff, and status callbacks.
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Final, Literal

from livereplay.backoff import Backoff
from livereplay.protocol.constants import JSON_SUBPROTOCOL, MSGPACK_SUBPROTOCOL, MiB
from livereplay.protocol.rules import CaughtUp
from livereplay.reader.errors import ReaderError
from livereplay.reader.machine import Item, ReaderMachine, ReaderStats
from livereplay.reader.transport import (
    Closed,
    ConnectFailed,
    Connection,
    ConnectRequest,
    Transport,
    WebSocketTransport,
)

# Browsers cannot send headers on a WebSocket; this client sends the token as a header.
TOKEN_HEADER: Final = "Authorization"

ReaderStatus = Literal["connecting", "connected", "caught_up", "reconnecting", "closed"]


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
    `aclose()` (or leaving `async with`), or with a `ReaderError`. `transport`
    opens the connections (default: the websockets library).
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
        transport: Transport | None = None,
    ) -> None:
        self.url = url
        self.session_id = session_id
        self.options = options or ReaderOptions()
        self.status: ReaderStatus = "connecting"
        self.machine = ReaderMachine(cursor)
        # One object: the machine counts events, gaps and duplicates, this shell connections.
        self.stats: ReaderStats = self.machine.stats
        self._headers = {TOKEN_HEADER: f"Bearer {token}"} if token else {}
        self._on_status = on_status
        self._transport = transport or WebSocketTransport()
        self._items = self._run()

    @property
    def cursor(self) -> str:
        return self.machine.cursor

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
        machine = self.machine
        while True:
            try:
                conn = await self._connect()
            except _Lost as lost:
                self.stats.failed_connects += 1
                await self._pause(policy, str(lost))
                continue
            if self.stats.connects:
                self.stats.reconnects += 1
            self.stats.connects += 1
            machine.connected()
            polite = True
            # Until hello, the connect timeout; then silence past the heartbeat is a dead daemon.
            timeout = self.options.connect_timeout_s
            try:
                while True:
                    message = await self._receive(conn, timeout)
                    had_hello = machine.hello is not None
                    items = machine.receive_message(message)
                    if not had_hello and machine.hello is not None:
                        policy.connected(time.monotonic())
                        self._set_status("connected", None)
                        timeout = self.options.silence_limit(machine.hello.heartbeat_s)
                    for item in items:
                        if isinstance(item, CaughtUp):
                            self._set_status("caught_up", None)
                        yield item
            except _Lost as lost:
                polite = False
                reason = str(lost)
            finally:
                await conn.close(polite)
            await self._pause(policy, reason)

    async def _pause(self, policy: ReconnectPolicy, reason: str) -> None:
        self._set_status("reconnecting", reason)
        await asyncio.sleep(policy.delay(time.monotonic()))

    async def _connect(self) -> Connection:
        options = self.options
        request = ConnectRequest(
            url=stream_url(self.url, self.session_id, self.machine.cursor),
            subprotocol=MSGPACK_SUBPROTOCOL if options.msgpack else JSON_SUBPROTOCOL,
            headers=self._headers,
            open_timeout_s=options.connect_timeout_s,
            max_frame_bytes=options.max_frame_bytes,
        )
        try:
            return await self._transport.connect(request)
        except ConnectFailed as exc:
            raise _Lost(str(exc)) from None

    async def _receive(self, conn: Connection, timeout: float) -> str | bytes:  # noqa: ASYNC109
        try:
            async with asyncio.timeout(timeout):
                return await conn.recv()
        except TimeoutError:
            self.stats.heartbeat_timeouts += 1
            raise _Lost(f"no frame for {timeout:g} s (heartbeat timeout)") from None
        except Closed as closed:
            self.machine.closed(closed.code)  # raises ReaderRefused on 44xx
            raise _Lost(f"closed {closed.code}") from None


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
    "TOKEN_HEADER",
    "Reader",
    "ReaderOptions",
    "ReaderStatus",
    "ReconnectPolicy",
    "stream_url",
    "subscribe",
]
