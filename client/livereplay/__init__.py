"""livereplay: bounded, resumable live replay of agent-runtime sessions.

This package is what runtimes and hosts import. It depends only on msgspec and
websockets; the daemon lives in `livereplay_server`.
"""

from ._cursor import (
    Cursor,
    MalformedCursor,
    StartWord,
    WrongSession,
    parse_cursor,
    parse_start,
    valid_incarnation,
    valid_session_id,
)
from ._log import AppendRefused, AppendResult, Limits, SessionLog, SessionTable, StoredEvent
from ._rules import Gap, GapDetail, GapReason, Head, Snapshot, Subscription

__all__ = [
    "AppendRefused",
    "AppendResult",
    "Cursor",
    "Gap",
    "GapDetail",
    "GapReason",
    "Head",
    "Limits",
    "MalformedCursor",
    "SessionLog",
    "SessionTable",
    "Snapshot",
    "StartWord",
    "StoredEvent",
    "Subscription",
    "WrongSession",
    "parse_cursor",
    "parse_start",
    "valid_incarnation",
    "valid_session_id",
]
