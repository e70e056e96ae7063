"""The socket under a WebSocket, for the app: `scope["extensions"]["livereplay.socket"]`.

ASGI gives an app no way to drop a connection: a close goes through `send()`, which
waits behind a peer that stopped reading, and uvicorn's `transport.close()` then waits
for that peer to drain its buffer, which it never does. A reader cut off after a send
timeout kept its socket and buffered frames forever. This handle lets the app abort the
connection at once and see how much is still buffered for it. Our WebSocket protocol
(`protocols.py`) puts one in every scope; other servers (the test client) have none.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

SCOPE_KEY = "livereplay.socket"


class Socket:
    __slots__ = ("_transport",)

    def __init__(self, transport: asyncio.WriteTransport) -> None:
        self._transport = transport

    @property
    def closed(self) -> bool:
        """Closing or gone: nothing written now would reach the peer."""
        return self._transport.is_closing()

    def buffered(self) -> int:
        """Bytes written but not yet taken by the kernel."""
        return self._transport.get_write_buffer_size()

    def abort(self) -> None:
        """Drop the connection now, with whatever is buffered (the peer sees a reset)."""
        self._transport.abort()


def socket_of(scope: Mapping[str, Any]) -> Socket | None:
    found = (scope.get("extensions") or {}).get(SCOPE_KEY)
    return found if isinstance(found, Socket) else None


def abort(scope: Mapping[str, Any]) -> bool:
    """Abort the connection of `scope`; False when the server gave no socket handle."""
    socket = socket_of(scope)
    if socket is None:
        return False
    socket.abort()
    return True
