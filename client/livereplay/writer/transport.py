"""The sender's transport seam: how it opens a connection to the ingest socket.

`Sender` needs only `Transport.connect` and a `Connection` to send and receive
binary frames; `WebSocketTransport` is the real one (docs/INGEST.md), and tests
plug in a fake. A transport reports a failed attempt as `ConnectFailed`; an open
connection ends by raising one of `CONNECTION_ERRORS` (a fake raises `OSError`)
or, closed normally, by ending its iteration.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Final, Protocol

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.typing import Subprotocol

from livereplay.protocol.constants import INGEST_SUBPROTOCOL, MiB

# What an open connection raises when it is lost.
CONNECTION_ERRORS: Final = (ConnectionClosed, OSError, TimeoutError)


class Connection(Protocol):
    async def send(self, message: bytes) -> None: ...

    async def recv(self) -> str | bytes: ...

    def __aiter__(self) -> AsyncIterator[str | bytes]: ...

    async def close(self) -> None: ...


class Transport(Protocol):
    async def connect(
        self, url: str, headers: Mapping[str, str], open_timeout: float
    ) -> Connection: ...


class ConnectFailed(Exception):
    """A connection attempt failed; `http_status` is the handshake's answer (0: none)."""

    def __init__(self, reason: str, http_status: int = 0) -> None:
        super().__init__(reason)
        self.http_status = http_status


class WebSocketTransport:
    """The ingest WebSocket, with the options the daemon expects."""

    def __init__(self, ping_interval_s: float, ping_timeout_s: float) -> None:
        self.ping_interval_s = ping_interval_s
        self.ping_timeout_s = ping_timeout_s

    async def connect(
        self, url: str, headers: Mapping[str, str], open_timeout: float
    ) -> Connection:
        try:
            return await connect(
                url,
                subprotocols=[Subprotocol(INGEST_SUBPROTOCOL)],
                additional_headers=dict(headers),
                compression=None,
                proxy=None,
                open_timeout=open_timeout,
                ping_interval=self.ping_interval_s,
                ping_timeout=self.ping_timeout_s,
                close_timeout=1.0,
                max_size=1 * MiB,
                user_agent_header="livereplay-writer",
            )
        except (InvalidHandshake, InvalidURI) as exc:
            status = exc.response.status_code if isinstance(exc, InvalidStatus) else 0
            raise ConnectFailed(str(exc), status) from exc


__all__ = ["CONNECTION_ERRORS", "ConnectFailed", "Connection", "Transport", "WebSocketTransport"]
