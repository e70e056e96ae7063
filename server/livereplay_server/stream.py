"""The reader WebSocket: backlog, `caught_up`, then live events, with gaps as frames.

The handler admits the socket (token, connection limits), asks the service where
the stream starts (a refusal is an error frame and a close), and hands the reader
to `reading.follow`, the loop every reader transport shares; only
how a frame goes out is the WebSocket's own. A closed socket (or uvicorn's 1012 on
shutdown) is noticed at once through our socket handle.
"""

from __future__ import annotations

import contextlib
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from livereplay.protocol.frames import ErrorFrame

from . import codec as codecs
from . import service, sockets
from .admission import admit, close_code, close_quietly
from .errors import DomainError
from .reading import Connection, ReaderGone, follow, noticing_close
from .state import AppState

CLOSE_INTERNAL = 1011


def connection(ws: WebSocket, state: AppState, codec: codecs.Codec, session_id: str) -> Connection:
    """A reader connection whose frames are WebSocket messages of the codec's kind."""

    async def deliver(data: bytes) -> None:
        message: dict[str, Any] = {"type": "websocket.send"}
        if codec.text:
            message["text"] = data.decode()
        else:
            message["bytes"] = data
        try:
            await ws.send(message)
        except WebSocketDisconnect:
            raise ConnectionError("the reader went away") from None

    return Connection(state, codec, session_id, deliver, lambda: sockets.abort(ws.scope))


async def stream(ws: WebSocket) -> None:
    state: AppState = ws.app.state.livereplay
    codec = codecs.choose_codec(list(ws.scope.get("subprotocols", [])))
    session_id: str = ws.path_params["session_id"]
    conn = connection(ws, state, codec, session_id)

    async def send_error(code: str, message: str) -> None:
        await conn.send(ErrorFrame(code, message))

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
        await _stream(conn, ws)
    finally:
        state.connections.release(client)


async def _stream(conn: Connection, ws: WebSocket) -> None:
    state = conn.state
    try:
        start = service.stream_start(conn.session_id, ws.query_params.get("cursor"))
    except DomainError as fault:
        state.metrics.connections_refused.labels(fault.code).inc()
        with contextlib.suppress(ReaderGone):
            await conn.send(ErrorFrame(fault.code, fault.message))
        await close_quietly(ws, close_code(fault))
        return
    socket = sockets.socket_of(ws.scope)
    if socket is not None:
        socket.ignore_incoming = True  # readers send nothing the daemon needs
        ok = await follow(conn, start, socket.lost, socket)
    else:  # a server without our socket handle: receiving is how a close is noticed
        async with noticing_close(ws.receive, "websocket.disconnect") as lost:
            ok = await follow(conn, start, lost, None)
    if not ok:
        await close_quietly(ws, CLOSE_INTERNAL)
