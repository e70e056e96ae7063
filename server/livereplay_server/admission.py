"""Who may open a socket: its token and the connection limits; a refusal's close code.

Host and Origin are checked before routing (guard.py). A refusal here comes
after the handshake as one error frame and a close, so a browser sees the code
(a refused handshake shows only as 1006).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from starlette.websockets import WebSocket

from livereplay.protocol.constants import (
    CLOSE_CLIENT_FAULT,
    CLOSE_FORBIDDEN,
    CLOSE_TRY_AGAIN,
    CLOSE_UNAUTHENTICATED,
)

from . import activity
from .auth import bearer, token_from_subprotocols
from .errors import DomainError
from .http import client_address
from .state import AppState

SendError = Callable[[str, str], Awaitable[None]]


def socket_token(ws: WebSocket) -> str | None:
    """Query `token`, a `livereplay.token.<token>` subprotocol, or an Authorization header."""
    return (
        ws.query_params.get("token")
        or token_from_subprotocols(list(ws.scope.get("subprotocols", [])))
        or bearer(ws.headers.get("authorization"))
    )


async def admit(
    ws: WebSocket,
    state: AppState,
    subprotocol: str | None,
    authorize: Callable[[str | None], None],
    send_error: SendError,
) -> str | None:
    """Accept the socket if allowed: the client address holding a connection slot (the
    caller releases it), or None once the socket has been refused and closed."""
    refused = state.metrics.connections_refused
    token = socket_token(ws)  # before the accept: then the handshake's headers are gone
    await ws.accept(subprotocol=subprotocol)
    try:
        authorize(token)
    except DomainError as error:
        refused.labels(error.code).inc()
        activity.socket_refused(ws.scope, error.code)
        await _refuse(ws, send_error, error)
        return None
    client = client_address(ws)
    try:
        state.connections.acquire(client)
    except DomainError as error:
        refused.labels(error.code).inc()
        activity.socket_refused(ws.scope, error.code, limit=True)
        await _refuse(ws, send_error, error)
        return None
    # Its close is logged when its handler returns (app.SocketRoutes).
    activity.socket_opened(ws.scope, state.activity)
    return client


def close_code(error: DomainError) -> int:
    """The WebSocket close after a refusal (PROTOCOL.md 7): try again later, or which fault."""
    if error.retryable:
        return CLOSE_TRY_AGAIN
    return {401: CLOSE_UNAUTHENTICATED, 403: CLOSE_FORBIDDEN}.get(error.status, CLOSE_CLIENT_FAULT)


async def _refuse(ws: WebSocket, send_error: SendError, error: DomainError) -> None:
    with contextlib.suppress(Exception):
        await send_error(error.code, error.message)
    await close_quietly(ws, close_code(error))


async def close_quietly(ws: WebSocket, code: int) -> None:
    """Close without waiting long: a peer that stopped reading would block the close frame."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(1.0):
            await ws.close(code)
