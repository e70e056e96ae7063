"""uvicorn's HTTP and WebSocket protocols, with every connection bounded (issue 9).

uvicorn bounds none of this: a request head or body may take forever (its keep-alive
timer runs only between requests), any number of HTTP connections may be open, a URL or
head may be any size (and a WebSocket handshake the websockets parser refuses gets no
answer at all), and every close waits for a peer that may never read. The bounds live
here, below the app, so they hold for every route and every close:

- the head must arrive within `--http-header-timeout-s` (also a keep-alive connection's
  next head), the body within `--http-body-timeout-s`; else 408 and close;
- a URL over `--max-url-bytes` gets 414, a head over `--max-header-bytes` 431;
- over `--max-http-connections` HTTP connections, the next request gets 503 with
  `Retry-After`; WebSockets are not counted (the app's `--max-connections` is theirs);
- a response the client stops taking for `--send-timeout-s` is cut off;
- a response that streams (SSE, NDJSON, a long-poll) gets a socket handle like a
  WebSocket's (sockets.py), whose `lost` is done on disconnect and on shutdown, so the
  stream ends at once rather than holding the server's exit;
- every close is bounded, and an answer given before the request was read whole is
  followed by a lingering close (transport.py), so the client reads it, not a reset.

Each refusal or timeout counts in `livereplay_http_connections_refused_total{code}`.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass
from typing import Any, cast

import uvicorn
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.exceptions import HeaderLineTooLong, RequestLineTooLong, TooManyHeaders

from livereplay.protocol.constants import MiB
from livereplay.protocol.records import json_encoder

from .config import Settings
from .metrics import Metrics
from .sockets import HTTP_SCOPE_KEY, SCOPE_KEY, Socket
from .transport import STALL_S, BoundedTransport

# After an early answer, at least this much of the rest of a request is read and dropped.
DISCARD_MIN_BYTES = 16 * MiB


@dataclass(slots=True)
class Guard:
    """The bounds, and the HTTP connection count, that all connections of a server share."""

    header_timeout_s: float
    body_timeout_s: float
    max_http_connections: int
    max_url_bytes: int
    max_header_bytes: int
    send_timeout_s: float
    discard_bytes: int
    metrics: Metrics
    http_connections: int = 0

    @classmethod
    def from_settings(cls, settings: Settings, metrics: Metrics) -> Guard:
        return cls(
            header_timeout_s=settings.http_header_timeout_s,
            body_timeout_s=settings.http_body_timeout_s,
            max_http_connections=settings.max_http_connections,
            max_url_bytes=settings.max_url_bytes,
            max_header_bytes=settings.max_header_bytes,
            send_timeout_s=settings.send_timeout_s,
            discard_bytes=max(DISCARD_MIN_BYTES, 8 * settings.max_batch_bytes),
            metrics=metrics,
        )

    def refused(self, code: str) -> None:
        self.metrics.http_refused.labels(code).inc()

    def aborted(self, reason: str) -> None:
        self.metrics.connections_aborted.labels(reason).inc()


class DaemonConfig(uvicorn.Config):
    """uvicorn's Config, carrying the guard to the protocols uvicorn makes from it."""

    def __init__(self, app: Any, guard: Guard, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.guard = guard


def _guard_of(config: uvicorn.Config) -> Guard:
    if not isinstance(config, DaemonConfig):
        raise TypeError("these protocols need a DaemonConfig (server.uvicorn_config)")
    return config.guard


def _answer(status: int, code: str, message: str, headers: list[tuple[bytes, bytes]]) -> bytes:
    """A whole error response in the API's shape, closing the connection."""
    body = json_encoder.encode({"error": {"code": code, "message": message}})
    head = [STATUS_LINE[status]]
    for name, value in [
        *headers,
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]:
        head += [name, b": ", value, b"\r\n"]
    return b"".join([*head, b"\r\n", body])


class GuardedHttp(HttpToolsProtocol):
    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.guard = _guard_of(config)
        self.bounded: BoundedTransport
        self._counted = False  # holds one of --max-http-connections
        self._refused = False  # answered here: the rest of the input is dropped
        self._begun = False  # a request's first byte arrived
        self._in_head = True
        self._head_bytes = 0  # raw bytes while in a head: httptools buffers partial lines
        self._url_bytes = 0
        self._header_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._stall_timer: asyncio.TimerHandle | None = None
        self._stall_mark = 0
        self._stream_lost: asyncio.Future[None] | None = None  # a streaming response's

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        guard = self.guard
        self.bounded = BoundedTransport(
            cast(asyncio.Transport, transport),
            guard.aborted,
            linger_read_s=guard.body_timeout_s,
            discard_bytes=guard.discard_bytes,
        )
        super().connection_made(self.bounded)
        self._head_timer = self.loop.call_later(guard.header_timeout_s, self._head_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.bounded.lost()
        self._stop_timers()
        self._release()
        self._end_stream()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.bounded.lingering:
            self.bounded.discard(len(data))
            return
        if self._refused:
            return
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        guard = self.guard
        if self._in_head and self._head_bytes > guard.max_url_bytes + guard.max_header_bytes:
            self._too_large()

    def shutdown(self) -> None:
        self.bounded.expect_input = False  # on shutdown, no lingering over unread input
        self._end_stream()  # a streaming response ends now; then the connection closes
        super().shutdown()

    # Parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._begun = True
        self._url_bytes = self._header_bytes = 0
        self.bounded.expect_input = True
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.guard.header_timeout_s, self._head_timeout)

    def on_url(self, url: bytes) -> None:
        if self._refused:
            return
        self._url_bytes += len(url)
        limit = self.guard.max_url_bytes
        if self._url_bytes > limit:
            self._refuse(414, "url_too_long", f"a URL is at most {limit} bytes")
            return
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._refused:
            return
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > self.guard.max_header_bytes:
            self._too_large()
            return
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        if self._refused:
            return
        upgrade = self.parser.should_upgrade() and self._should_upgrade()
        if not upgrade and not self._counted:
            guard = self.guard
            if guard.http_connections >= guard.max_http_connections:
                self._refuse(
                    503,
                    "too_many_http_connections",
                    f"at most {guard.max_http_connections} HTTP connections at once",
                    retry_after=True,
                )
                return
            self._counted = True
            guard.http_connections += 1
            guard.metrics.http_connections.inc()
        self._in_head = False
        self._head_bytes = 0
        super().on_headers_complete()
        if not upgrade:
            self._body_timer = self.loop.call_later(self.guard.body_timeout_s, self._body_timeout)
            extensions = cast(dict[str, Any], self.scope.setdefault("extensions", {}))
            extensions[HTTP_SCOPE_KEY] = _StreamOpener(self, self.cycle)

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        self._in_head = True
        self.bounded.expect_input = False
        if not self._refused:
            super().on_message_complete()

    def on_response_complete(self) -> None:
        if self.bounded.expect_input and not self._refused:
            # Answered before the body was read whole (a 413): keeping the connection
            # would mean reading the rest through the parser, unbounded in bytes.
            self.bounded.close()
        super().on_response_complete()

    def handle_websocket_upgrade(self) -> None:
        if self._refused:
            return
        # From here on the socket is a WebSocket's: none of the HTTP bounds apply.
        self._stop_timers()
        self._release()
        self.bounded.expect_input = False
        super().handle_websocket_upgrade()

    def _unsupported_upgrade_warning(self) -> None:
        if not self._refused:  # a refused head's headers were dropped, Upgrade among them
            super()._unsupported_upgrade_warning()

    # Streaming responses

    def _stream_socket(self, cycle: RequestResponseCycle) -> Socket:
        """The socket handle of `cycle`'s response, which streams (sockets.py)."""
        self._end_stream()  # an earlier request's stream on this connection is over
        lost: asyncio.Future[None] = self.loop.create_future()
        self._stream_lost = lost
        return Socket(
            self.bounded,
            lost,
            write=self.bounded.write,
            can_write=lambda: (
                cycle.response_started and not (cycle.response_complete or cycle.disconnected)
            ),
            shares_frames=True,
        )

    def _end_stream(self) -> None:
        lost = self._stream_lost
        if lost is not None and not lost.done():
            lost.set_result(None)

    # Flow control: a response the client stops taking is cut off

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._stall_timer is None:
            self._stall_mark = self.bounded.get_write_buffer_size()
            self._stall_timer = self.loop.call_later(self.guard.send_timeout_s, self._stalled)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None

    def _stalled(self) -> None:
        self._stall_timer = None
        if self.bounded.is_closing():  # a closing transport bounds itself
            return
        size = self.bounded.get_write_buffer_size()
        if size < self._stall_mark:  # slow, but taking bytes
            self._stall_mark = size
            self._stall_timer = self.loop.call_later(self.guard.send_timeout_s, self._stalled)
            return
        self.guard.aborted("send_timeout")
        self.bounded.abort()

    # Refusals

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self._refused or self.bounded.is_closing():
            return
        if self._begun:
            self._refuse(
                408, "header_timeout", "the request head did not arrive in time", read_s=STALL_S
            )
        else:  # nothing was sent: nothing to answer
            self.guard.refused("header_timeout")
            self._refused = True
            self.bounded.close()

    def _body_timeout(self) -> None:
        self._body_timer = None
        if not (self._refused or self.bounded.is_closing()):
            message = "the request body did not arrive in time"
            self._refuse(408, "body_timeout", message, read_s=STALL_S)

    def _too_large(self) -> None:
        if not self._refused:
            limit = self.guard.max_header_bytes
            self._refuse(431, "headers_too_large", f"request headers are at most {limit} bytes")

    def _refuse(
        self,
        status: int,
        code: str,
        message: str,
        read_s: float | None = None,
        *,
        retry_after: bool = False,
    ) -> None:
        """Answer `status` unless the app already began answering, then close lingering."""
        self._refused = True
        self._stop_timers()
        self.guard.refused(code)
        cycle = self.cycle
        if self._in_head:  # `cycle` is the previous request's, if any
            answer = cycle is None or cycle.response_complete
        else:  # it is this request's: answer unless the app began to
            answer = cycle is None or not cycle.response_started
        if cycle is not None and not cycle.response_complete:
            # The app's reads now see a disconnect, and whatever it sends goes nowhere.
            cycle.disconnected = True
            cycle.message_event.set()
        if answer:
            headers = list(self.server_state.default_headers)
            if retry_after:
                headers.append((b"retry-after", b"1"))
            self.bounded.write(_answer(status, code, message, headers))
        self.bounded.linger_close(self.guard.body_timeout_s if read_s is None else read_s)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _stop_timers(self) -> None:
        self._cancel_head_timer()
        for timer in (self._body_timer, self._stall_timer):
            if timer is not None:
                timer.cancel()
        self._body_timer = self._stall_timer = None

    def _release(self) -> None:
        if self._counted:
            self._counted = False
            self.guard.http_connections -= 1
            self.guard.metrics.http_connections.dec()


class _StreamOpener:
    """What an HTTP scope holds to make its response's socket handle, on demand (only a
    streaming response asks). Weak references: the scope it sits in must not keep its
    connection and request alive in a cycle until the garbage collector runs."""

    __slots__ = ("_cycle", "_protocol")

    def __init__(self, protocol: GuardedHttp, cycle: RequestResponseCycle) -> None:
        self._protocol = weakref.ref(protocol)
        self._cycle = weakref.ref(cycle)

    def __call__(self) -> Socket | None:
        protocol, cycle = self._protocol(), self._cycle()
        if protocol is None or cycle is None:
            return None
        return protocol._stream_socket(cycle)


class _Inbox:
    """What uvicorn needs of an `asyncio.Queue` (one consumer: the app's `receive`), in a
    fraction of its memory: an idle reader holds one, and a daemon holds thousands."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Any:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.pop(0)

    def empty(self) -> bool:
        return not self._items


class _Flag:
    """What uvicorn needs of an `asyncio.Event` (its `writable`), without a deque."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._waiters: list[asyncio.Future[None]] = []

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        if not self._set:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter
        return True


class GuardedWebSocket(WebSocketsSansIOProtocol):
    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.guard = _guard_of(config)
        self.bounded: BoundedTransport
        self.socket: Socket | None = None
        self._lost: asyncio.Future[None] = self.loop.create_future()
        # Lighter than uvicorn's own, for the same use: memory per idle reader counts.
        self.queue = _Inbox()  # type: ignore[assignment]
        self.writable = _Flag()  # type: ignore[assignment]
        self.writable.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The HTTP protocol hands over its own bounded transport on upgrade.
        if isinstance(transport, BoundedTransport):
            transport = transport.inner
        self.bounded = BoundedTransport(cast(asyncio.Transport, transport), self.guard.aborted)
        super().connection_made(self.bounded)

    def connection_lost(self, exc: Exception | None) -> None:
        self.bounded.lost()
        self._mark_lost()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        self._mark_lost()  # the server sends 1012 and closes: readers stop now
        super().shutdown()

    def _mark_lost(self) -> None:
        if not self._lost.done():
            self._lost.set_result(None)

    def send_receive_event_to_app(self) -> None:
        socket = self.socket
        if socket is not None and socket.ignore_incoming:
            self.frames = []  # a reader's messages mean nothing: drop them, keep reading
            return
        super().send_receive_event_to_app()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        exc = self.conn.handshake_exc
        if exc is not None and not self.handshake_initiated and not self.bounded.is_closing():
            # The websockets parser refused the handshake (a line over its 8 KiB, more
            # than 128 headers) and queued an answer that uvicorn never writes.
            if isinstance(exc, RequestLineTooLong):
                self.guard.refused("url_too_long")
            elif isinstance(exc, HeaderLineTooLong | TooManyHeaders):
                self.guard.refused("headers_too_large")
            else:
                self.guard.refused("invalid_request")
            self.bounded.write(b"".join(self.conn.data_to_send()))
            self.bounded.close()

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get("more_body"):
            # A denial response (guard.py's 403) is a completed handshake: uvicorn only
            # marks it so once the connection is lost, and a handler returning before
            # that would be logged as an error ("returned without completing handshake").
            self.handshake_complete = True
        elif message["type"] == "websocket.accept":
            # The handshake is done, and admission read its headers: an idle reader
            # need not hold them (2.5 KB of a reader's 20). The parser's generator keeps
            # the request itself alive, so its headers are emptied in place.
            self.request.headers.clear()
            headers = self.scope["headers"]
            assert isinstance(headers, list)
            headers.clear()
            self.request = self.response = None  # type: ignore[assignment]

    async def run_asgi(self) -> None:
        extensions = cast(dict[str, Any], self.scope.setdefault("extensions", {}))
        self.socket = Socket(
            self.bounded,
            self._lost,
            write=self.bounded.inner.write,
            can_write=lambda: (
                self.handshake_complete and not (self.close_sent or self.disconnected)
            ),
            # Negotiated extensions (permessage-deflate) make each connection's bytes its own.
            shares_frames=not self.conn.extensions,
        )
        extensions[SCOPE_KEY] = self.socket
        await super().run_asgi()
