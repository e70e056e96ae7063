"""Who may open a socket: its token and the connection limits.

Host and Origin are checked before routing (guard.py). A refusal here comes
after the handshake as one error frame and a close, so a browser sees the code
(a refused handshake shows only as 1006).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from starlette.websockets import WebSocket

from . import activity
from .auth import AuthError, bearer, token_from_subprotocols
from .http import client_address
from .limits import LimitExceeded
from .state import AppState

# "Try again later": readers and writers retry it with backoff (4429 was final).
CLOSE_OVER_LIMIT = 1013

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
    except AuthError as exc:
        refused.labels(exc.code).inc()
        activity.socket_refused(ws.scope, exc.code)
        await _refuse(ws, send_error, exc.code, exc.message, exc.close_code)
        return None
    client = client_address(ws)
    try:
        state.connections.acquire(client)
    except LimitExceeded as exc:
        refused.labels(exc.code).inc()
        activity.socket_refused(ws.scope, exc.code, limit=True)
        await _refuse(ws, send_error, exc.code, exc.message, CLOSE_OVER_LIMIT)
        return None
    # Its close is logged when its handler returns (app.SocketRoutes).
    activity.socket_opened(ws.scope, state.activity)
    return client


async def _refuse(
    ws: WebSocket, send_error: SendError, code: str, message: str, close_code: int
) -> None:
    with contextlib.suppress(Exception):
        await send_error(code, message)
    await close_quietly(ws, close_code)


async def close_quietly(ws: WebSocket, code: int) -> None:
    """Close without waiting long: a peer that stopped reading would block the close frame."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(1.0):
            await ws.close(code)
