"""A minimal WebSocket reader for the fan-out load: one asyncio protocol per connection.

The websockets client costs about 40 µs of Python per message (its frame parser,
an assembler, a task woken per message): two processes of 500 such readers top out
near 25,000 frames/s on one core, below what the servers under test send. This
reader parses server frames in `data_received` and hands each message to a
callback, about a tenth of that. It does what a reader must (the upgrade, the
subprotocol check, pongs, the closing handshake), nothing more, and serves every
target alike, so the comparison stays fair.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from collections.abc import Callable
from typing import cast

# Control opcodes; any other frame is data (text, binary or a continuation), joined until FIN.
OP_CLOSE, OP_PING, OP_PONG = 8, 9, 10
MAX_HEAD = 16_384


class HandshakeError(Exception):
    pass


def _client_frame(opcode: int, data: bytes) -> bytes:
    """A masked frame (clients must mask), for the small control frames this reader sends."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    return bytes([0x80 | opcode, 0x80 | len(data)]) + mask + masked


class LeanReader(asyncio.Protocol):
    """`on_message(data)` for each text or binary message; returns True to hang up."""

    def __init__(
        self, host: str, path: str, subprotocol: str | None, on_message: Callable[[bytes], bool]
    ) -> None:
        self._request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
            + (f"Sec-WebSocket-Protocol: {subprotocol}\r\n" if subprotocol else "")
            + "\r\n"
        ).encode()
        self._subprotocol = subprotocol
        self._on_message = on_message
        self._transport: asyncio.Transport | None = None
        self._upgraded = False
        self._buffer = bytearray()
        self._parts: list[bytes] = []
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._transport.write(self._request)

    def connection_lost(self, exc: Exception | None) -> None:
        for future in (self.opened, self.closed):
            if not future.done():
                future.set_exception(exc or ConnectionResetError("closed"))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._upgraded and not self._read_head():
            return
        self._read_frames()

    def _read_head(self) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEAD:
                self._fail(HandshakeError("response head too long"))
            return False
        head = bytes(self._buffer[:end]).decode("latin-1").lower()
        del self._buffer[: end + 4]
        if not head.startswith("http/1.1 101"):
            self._fail(HandshakeError(head.split("\r\n", 1)[0]))
            return False
        if self._subprotocol and f"sec-websocket-protocol: {self._subprotocol}" not in head:
            self._fail(HandshakeError(f"subprotocol {self._subprotocol} refused"))
            return False
        self._upgraded = True
        self.opened.set_result(None)
        return True

    def _read_frames(self) -> None:
        buffer = self._buffer
        at, size = 0, len(buffer)
        while size - at >= 2:
            first, second = buffer[at], buffer[at + 1]
            length, head = second & 0x7F, 2
            if length == 126:
                if size - at < 4:
                    break
                (length,) = struct.unpack_from("!H", buffer, at + 2)
                head = 4
            elif length == 127:
                if size - at < 10:
                    break
                (length,) = struct.unpack_from("!Q", buffer, at + 2)
                head = 10
            if second & 0x80:
                self._fail(HandshakeError("the server masked a frame"))
                return
            if size - at < head + length:
                break
            data = bytes(buffer[at + head : at + head + length])
            at += head + length
            if self._frame(first & 0x80, first & 0x0F, data):
                return
        del buffer[:at]

    def _frame(self, fin: int, opcode: int, data: bytes) -> bool:
        """One frame; True when the connection is done."""
        assert self._transport is not None
        if opcode == OP_PING:
            self._transport.write(_client_frame(OP_PONG, data[:125]))
            return False
        if opcode == OP_PONG:
            return False
        if opcode == OP_CLOSE:
            self._transport.write(_client_frame(OP_CLOSE, data[:2]))
            self._transport.close()
            if not self.closed.done():
                self.closed.set_result(None)
            return True
        self._parts.append(data)
        if not fin:
            return False
        message = data if len(self._parts) == 1 else b"".join(self._parts)
        self._parts.clear()
        if self._on_message(message):
            self._transport.write(_client_frame(OP_CLOSE, struct.pack("!H", 1000)))
            self._transport.close()
            if not self.closed.done():
                self.closed.set_result(None)
            return True
        return False

    def _fail(self, exc: Exception) -> None:
        for future in (self.opened, self.closed):
            if not future.done():
                future.set_exception(exc)
        if self._transport is not None:
            self._transport.abort()


async def connect(
    port: int, path: str, subprotocol: str | None, on_message: Callable[[bytes], bool]
) -> LeanReader:
    """An open connection to 127.0.0.1:`port`, upgraded."""
    loop = asyncio.get_running_loop()
    _, reader = await loop.create_connection(
        lambda: LeanReader(f"127.0.0.1:{port}", path, subprotocol, on_message),
        "127.0.0.1",
        port,
    )
    await reader.opened
    return reader
