"""The reader stream over plain HTTP: SSE or NDJSON, chosen by `Accept` (PROTOCOL.md 6, 8).

`GET /v1/sessions/{id}/stream?cursor=C` without a WebSocket upgrade. Every
refusal is decided before the response starts and answered as an HTTP error (a
`DomainError`): auth (401, 403; Host and Origin are checked before any route,
guard.py), a form the client did not ask for (406), a client fault (400), a
connection limit (429 with `Retry-After`). Then the response streams the frames
`reading.follow` sends, the same loop as the WebSocket's, with its timeouts,
heartbeats, live fan-out and `lagged` gaps; only the codec (http_codec.py)
differs. A `Last-Event-ID` header (a reconnecting `EventSource`) takes the place
of `cursor` and wins over it.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from livereplay.protocol import Cursor, StartWord

from . import activity, http_codec, service, sockets
from .codec import Codec
from .errors import DomainError
from .http import client_address, error_answer, request_token
from .reading import Connection, follow, noticing_close
from .state import AppState

# How long the end of a stream may take to go out before the connection is dropped.
END_TIMEOUT_S = 1.0


async def get_stream(request: Request) -> Response:
    state: AppState = request.app.state.livereplay
    session_id: str = request.path_params["session_id"]
    state.auth.check_reader(request_token(request), session_id)
    codec = http_codec.choose_codec(request.headers.get("accept"))
    if codec is None:
        message = (
            f"ask for `Accept: {http_codec.SSE_MEDIA_TYPE}` (SSE) or "
            f"`{http_codec.NDJSON_MEDIA_TYPE}` (NDJSON), or open a WebSocket"
        )
        raise DomainError("not_acceptable", message)
    cursor = request.headers.get("last-event-id") or request.query_params.get("cursor")
    start = service.stream_start(session_id, cursor)
    return ReaderStream(state, codec, session_id, start, client_address(request))


class ReaderStream(Response):
    """A response that is a reader's stream, holding one of the reader connections."""

    def __init__(
        self,
        state: AppState,
        codec: Codec,
        session_id: str,
        start: Cursor | StartWord,
        client: str,
    ) -> None:
        # Not Response.__init__: that would give the stream a Content-Length of 0.
        self.status_code = 200
        self.background = None
        self.raw_headers = [
            (b"content-type", http_codec.media_type(codec).encode()),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),  # nginx: pass each chunk on at once
        ]
        self.state = state
        self.codec = codec
        self.session_id = session_id
        self.start = start
        self.client = client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "HEAD":  # the answer a GET would start with, and no stream
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        state = self.state
        try:
            state.connections.acquire(self.client)
        except DomainError as refused:
            state.metrics.connections_refused.labels(refused.code).inc()
            state.metrics.http_errors.labels(refused.code).inc()
            activity.socket_refused(scope, refused.code, limit=True)
            await error_answer(refused)(scope, receive, send)
            return
        activity.socket_opened(scope, state.activity)  # logged like a WebSocket reader's
        try:
            await self._stream(scope, receive, send)
        finally:
            state.connections.release(self.client)
            activity.socket_closed(scope, state.activity)

    async def _stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})

        async def deliver(data: bytes) -> None:
            await send({"type": "http.response.body", "body": data, "more_body": True})

        socket = sockets.http_socket_of(scope)
        abort = socket.abort if socket is not None else _no_abort
        conn = Connection(self.state, self.codec, self.session_id, deliver, abort)
        if socket is not None:
            await follow(conn, self.start, socket.lost, socket)
        else:  # another server: receiving is how a disconnect is noticed
            async with noticing_close(receive, "http.disconnect") as lost:
                await follow(conn, self.start, lost, None)
        # The end of the stream (the reader reconnects with its cursor): a peer that
        # stopped reading must not hold it.
        try:
            async with asyncio.timeout(END_TIMEOUT_S):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except TimeoutError:
            abort()
        except (OSError, RuntimeError):
            pass


def _no_abort() -> None:
    """Another server gives no way to drop a connection: the send timeout ends the loop."""
