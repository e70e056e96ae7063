"""Why a reader stops for good.

`ReaderRefused` is not a `ProtocolError`: an HTTP refusal, or a 44xx close that
came without an `error` frame, has no protocol code, and `ProtocolError` promises
one. Both derive from `LiveReplayError`, so one `except` catches every refusal.
"""

from __future__ import annotations

from livereplay.protocol.errors import LiveReplayError


class ReaderError(LiveReplayError):
    """The reader stopped for good; iteration ends with this."""


class ReaderRefused(ReaderError):
    """The daemon refused this reader (close 44xx, or an HTTP 4xx on connect).

    Reconnecting would get the same answer: fix the cursor, the session id or
    the token. `close_code` is the WebSocket close code (None for an HTTP
    refusal, then `http_status` is set); `code` is the daemon's error code.
    """

    def __init__(
        self,
        message: str,
        *,
        close_code: int | None = None,
        http_status: int | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.close_code = close_code
        self.http_status = http_status
        self.code = code


class ReaderProtocolError(ReaderError):
    """The daemon sent a frame that protocol version 1 does not have."""


__all__ = ["ReaderError", "ReaderProtocolError", "ReaderRefused"]
