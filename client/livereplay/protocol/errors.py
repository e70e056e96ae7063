"""One hierarchy for everything livereplay raises on purpose.

`ProtocolError` carries one of the protocol's error codes (PROTOCOL.md section 6)
and a message for people; the daemon's refusals (`livereplay_server.errors.
DomainError`) and the clients' refusals derive from it, so a caller catches one
class and reads one `code`.
"""

from __future__ import annotations

from .constants import SESSION_ID_RULE


class LiveReplayError(Exception):
    """The base of every error livereplay raises on purpose."""


class ProtocolError(LiveReplayError):
    """A refusal named by a protocol error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class MalformedCursor(ProtocolError, ValueError):
    """The text is not a `lashsc2:` cursor."""

    def __init__(self, message: str) -> None:
        super().__init__("malformed_cursor", message)


class WrongSession(ProtocolError, ValueError):
    """The cursor belongs to another session."""

    def __init__(self, message: str) -> None:
        super().__init__("wrong_session", message)


class InvalidSessionId(ProtocolError, ValueError):
    """Not a session id (PROTOCOL.md section 1)."""

    def __init__(self, message: str = SESSION_ID_RULE) -> None:
        super().__init__("invalid_session_id", message)


class NotIJson(ProtocolError, ValueError):
    """A payload the protocol refuses (`invalid_event`); the message says why."""

    def __init__(self, message: str) -> None:
        super().__init__("invalid_event", message)


class AppendRefused(ProtocolError):
    """A batch refused as a whole; nothing was written."""
