"""The socket under a WebSocket, for the app: `scope["extensions"]["livereplay.socket"]`.

ASGI gives an app no way to drop a connection, to see what is still buffered for it,
or to send the same bytes to many: a send goes through `send()`, which frames each
message again for each connection and waits behind a peer that stopped reading, and
uvicorn's `transport.close()` then waits for that peer to drain, which it never does.
Our WebSocket protocol (`protocols.py`) puts this handle in every scope, and our HTTP
protocol makes one for a response that streams (SSE, NDJSON, a long-poll); other
servers give none, and the daemon then uses plain ASGI sends.

- `abort()` drops the connection at once (a reader cut off after a send timeout).
- `buffered()` is what the kernel has not taken yet: a live reader whose buffer is
  over its budget is slow (broadcast.py).
- `write_frame()` writes a complete, unmasked WebSocket frame built once for every
  reader at the same position (websockets' own `Frame.serialize`), when nothing
  else is being sent on the connection and no extension (permessage-deflate) would
  make each connection's bytes its own (`shares_frames`).
- `lost` is done when the connection is gone or closing: a reader need not keep a
  receive task running to notice it, and what a reader sends is dropped unread
  (`ignore_incoming`), since readers send nothing the daemon needs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

SCOPE_KEY = "livereplay.socket"
# An HTTP request's scope holds, under this key, a function that makes its response's
# socket handle, for a response that streams (httpstream.py); other requests make none.
HTTP_SCOPE_KEY = "livereplay.http_socket"


class Socket:
    __slots__ = ("_can_write", "_shares", "_transport", "_write", "ignore_incoming", "lost")

    def __init__(
        self,
        transport: asyncio.WriteTransport,
        lost: asyncio.Future[None],
        *,
        write: Callable[[bytes], object],
        can_write: Callable[[], bool],
        shares_frames: bool,
    ) -> None:
        self._transport = transport
        self._write = write
        self._can_write = can_write
        self._shares = shares_frames
        self.lost = lost
        self.ignore_incoming = False

    @property
    def closed(self) -> bool:
        """Closing or gone: nothing written now would reach the peer."""
        return self.lost.done() or self._transport.is_closing() or not self._can_write()

    @property
    def shares_frames(self) -> bool:
        """Whether frames built once for many connections are this one's bytes too."""
        return self._shares

    def buffered(self) -> int:
        """Bytes written but not yet taken by the kernel."""
        return self._transport.get_write_buffer_size()

    def write_frame(self, frame: bytes) -> bool:
        """Write a complete frame now (no waiting); False if the connection is closing."""
        if self.closed:
            return False
        self._write(frame)
        return True

    def abort(self) -> None:
        """Drop the connection now, with whatever is buffered (the peer sees a reset)."""
        self._transport.abort()


def socket_of(scope: Mapping[str, Any]) -> Socket | None:
    found = (scope.get("extensions") or {}).get(SCOPE_KEY)
    return found if isinstance(found, Socket) else None


def http_socket_of(scope: Mapping[str, Any]) -> Socket | None:
    """The socket handle of an HTTP response that streams; None from another server."""
    opener = (scope.get("extensions") or {}).get(HTTP_SCOPE_KEY)
    found = opener() if callable(opener) else None
    return found if isinstance(found, Socket) else None


def abort(scope: Mapping[str, Any]) -> bool:
    """Abort the connection of `scope`; False when the server gave no socket handle."""
    socket = socket_of(scope)
    if socket is None:
        return False
    socket.abort()
    return True
