"""The reader's transport seam: how one connection is opened, read and closed.

`Reader` talks to a `Transport` the way httpx's client talks to its transport
(and the writer's sender to its own, writer.transport), so a test can plug in a
fake and drive the reader with no network. The default, `WebSocketTransport`,
uses the websockets library and turns its exceptions into the three answers the
reader acts on: `ConnectFailed` (try again later), `ReaderRefused` (never), and
`Closed` (the connection is over).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as open_websocket
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.typing import Subprotocol

from livereplay.reader.errors import ReaderRefused


class ConnectFailed(Exception):
    """A connect that may succeed later: refused, timed out, or an HTTP 5xx, 408 or 429."""


class Closed(Exception):
    """The connection is over; `code` is the close code received (1006 if none came)."""

    def __init__(self, code: int) -> None:
        super().__init__(f"closed {code}")
        self.code = code


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    url: str
    subprotocol: str
    headers: Mapping[str, str]
    open_timeout_s: float
    max_frame_bytes: int


class Connection(Protocol):
    async def recv(self) -> str | bytes:
        """The next message (text for JSON, binary for MessagePack); `Closed` at the end."""
        ...

    async def close(self, polite: bool) -> None:
        """Close with a handshake (bounded) if `polite`, else drop the connection at once."""
        ...


class Transport(Protocol):
    async def connect(self, request: ConnectRequest) -> Connection:
        """Open a connection, or raise `ConnectFailed` or `ReaderRefused`."""
        ...


class WebSocketConnection:
    """A websockets client connection behind the `Connection` seam."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws

    async def recv(self) -> str | bytes:
        try:
            return await self._ws.recv()
        except ConnectionClosed as exc:
            raise Closed(exc.rcvd.code if exc.rcvd is not None else 1006) from None

    async def close(self, polite: bool) -> None:
        if polite:
            with contextlib.suppress(Exception):
                await self._ws.close()
        self._ws.transport.abort()


class WebSocketTransport:
    """The default transport: the websockets library."""

    async def connect(self, request: ConnectRequest) -> Connection:
        try:
            ws = await open_websocket(
                request.url,
                subprotocols=[Subprotocol(request.subprotocol)],
                additional_headers=dict(request.headers),
                open_timeout=request.open_timeout_s,
                close_timeout=1.0,
                # The reader's heartbeat watchdog replaces client pings.
                ping_interval=None,
                max_size=request.max_frame_bytes,
                compression=None,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if 400 <= status < 500 and status not in (408, 429):
                raise ReaderRefused(
                    f"the daemon refused the connection: HTTP {status}", http_status=status
                ) from None
            raise ConnectFailed(f"HTTP {status}") from None
        except InvalidURI:
            raise
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise ConnectFailed(f"connect failed: {type(exc).__name__}: {exc}") from None
        return WebSocketConnection(ws)


__all__ = [
    "Closed",
    "ConnectFailed",
    "ConnectRequest",
    "Connection",
    "Transport",
    "WebSocketConnection",
    "WebSocketTransport",
]
