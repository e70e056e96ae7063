"""A transport whose close cannot hang, around the one uvicorn's protocols write to.

asyncio's (and uvloop's) `close()` keeps a connection until its write buffer drains,
and a peer that is connected but not reading never drains it: the socket, its fd and
its buffered frames stayed forever (python-stack.md 1.2). Closing with request bytes
still unread has the opposite fault: the kernel answers them with a reset, which can
destroy an answer the client has not read yet (a 413 to a client that sends its whole
body before reading). So `close()`, whoever calls it, is one of:

- a bounded close: the peer gets what is buffered for as long as it keeps taking
  bytes; once it takes none for `STALL_S`, or after `LINGER_MAX_S`, the connection is
  aborted;
- a lingering close, while the protocol still expects request bytes: the answer goes
  out, the write side is shut (FIN), and input is read and dropped until the peer
  closes, for at most `read_s` (and `STALL_S` without input) and `discard_bytes`;
  then the connection is aborted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

from . import freed

# A closing connection whose peer takes no bytes (or sends none, while lingering) for
# this long is aborted.
STALL_S = 2.0
# However slowly it takes them, a closing connection is aborted after this.
LINGER_MAX_S = 60.0

Buffer = bytes | bytearray | memoryview


class BoundedTransport(asyncio.Transport):
    """Delegates to `inner`; only closing differs. The owning protocol calls `lost()` from
    its `connection_lost`, and sets `expect_input` while a request is still arriving."""

    def __init__(
        self,
        inner: asyncio.Transport,
        on_abort: Callable[[str], None],
        *,
        linger_read_s: float = 0.0,
        discard_bytes: int = 0,
    ) -> None:
        super().__init__()
        self.inner = inner
        self.expect_input = False
        self.linger_read_s = linger_read_s
        self.discard_bytes = discard_bytes
        self.lingering = False
        self._on_abort = on_abort
        self._loop = asyncio.get_running_loop()
        self._closing = False
        self._lost = False
        self._timer: asyncio.TimerHandle | None = None
        self._until = 0.0
        self._mark = 0
        self._last_input = 0.0
        self._discard_left = 0

    # Closing

    def close(self) -> None:
        if self.expect_input and self.linger_read_s > 0:
            self.linger_close(self.linger_read_s)
            return
        if self._closing:
            return
        self._closing = True
        self.inner.close()
        self._watch_drain()

    def linger_close(self, read_s: float) -> None:
        """Shut the write side after what is buffered, then drop input until the peer
        closes, so it reads the answer instead of a reset."""
        if self._closing:
            return
        self._closing = True
        self.lingering = True
        now = self._loop.time()
        self._until = now + read_s
        self._last_input = now
        self._discard_left = self.discard_bytes
        if self.inner.can_write_eof() and not self.inner.is_closing():
            self.inner.write_eof()
        self.inner.resume_reading()
        self._arm(min(STALL_S, read_s))

    def discard(self, size: int) -> None:
        """Input that arrived during a lingering close: dropped, within the byte bound."""
        self._last_input = self._loop.time()
        self._discard_left -= size
        if self._discard_left < 0:
            self._abort("linger")

    def abort(self) -> None:
        self._closing = True
        self._cancel()
        self.inner.abort()
        freed.note_dropped()

    def lost(self) -> None:
        """The connection is gone: no timer outlives it, and a later close does nothing."""
        self._lost = True
        self._closing = True
        self.lingering = False
        self._cancel()

    def _watch_drain(self) -> None:
        self._mark = self.inner.get_write_buffer_size()
        if self._mark and not self._lost:
            self._until = self._loop.time() + LINGER_MAX_S
            self._arm(STALL_S)

    def _tick(self) -> None:
        self._timer = None
        if self._lost:
            return
        now = self._loop.time()
        if self.lingering:
            if self.inner.is_closing():
                # The peer closed its side (the transport closes itself on EOF): what is
                # left is our answer draining.
                self.lingering = False
                self._watch_drain()
            elif now >= self._until or now - self._last_input >= STALL_S:
                self._abort("linger")
            else:
                self._arm(min(self._until, self._last_input + STALL_S) - now)
            return
        size = self.inner.get_write_buffer_size()
        if size and (size >= self._mark or now >= self._until):
            self._abort("stalled")
        elif size:
            self._mark = size
            self._arm(STALL_S)

    def _abort(self, reason: str) -> None:
        self._on_abort(reason)
        self.abort()

    def _arm(self, delay: float) -> None:
        self._cancel()
        self._timer = self._loop.call_later(max(delay, 0.0), self._tick)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # Delegation

    def is_closing(self) -> bool:
        return self._closing or self.inner.is_closing()

    def write(self, data: Buffer) -> None:
        if not self.lingering:  # the write side is shut: nothing more may follow the answer
            self.inner.write(data)

    def writelines(self, list_of_data: Iterable[Buffer]) -> None:
        if not self.lingering:
            self.inner.writelines(list_of_data)

    def write_eof(self) -> None:
        self.inner.write_eof()

    def can_write_eof(self) -> bool:
        return self.inner.can_write_eof()

    def get_write_buffer_size(self) -> int:
        return self.inner.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self.inner.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.inner.set_write_buffer_limits(high, low)

    def is_reading(self) -> bool:
        return self.inner.is_reading()

    def pause_reading(self) -> None:
        if not self.lingering:  # a lingering close reads until the peer closes
            self.inner.pause_reading()

    def resume_reading(self) -> None:
        self.inner.resume_reading()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.inner.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.inner.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.inner.get_protocol()
