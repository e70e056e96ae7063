"""livereplay: bounded, resumable live replay of agent-runtime sessions.

This package is what runtimes and hosts import. It depends only on msgspec and
websockets; the daemon lives in `livereplay_server`.
"""

from importlib.metadata import PackageNotFoundError, version

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
from ._ijson import NotIJson
from ._log import AppendRefused, AppendResult, Limits, SessionLog, SessionTable, StoredEvent
from ._reader import (
    Reader,
    ReaderError,
    ReaderOptions,
    ReaderProtocolError,
    ReaderRefused,
    ReaderStats,
    ReaderStatus,
    subscribe,
)
from ._rules import CaughtUp, Gap, GapDetail, GapReason, Head, Snapshot, Subscription
from ._sender import WriterOptions
from ._subscription import SubscriberLagged, WindowSubscription
from ._wire import EventOut
from ._writer import ClientClosed, LiveReplayClient, WriterRefused, WriterStats

try:
    __version__ = version("livereplay")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "AppendRefused",
    "AppendResult",
    "CaughtUp",
    "ClientClosed",
    "Cursor",
    "EventOut",
    "Gap",
    "GapDetail",
    "GapReason",
    "Head",
    "Limits",
    "LiveReplayClient",
    "MalformedCursor",
    "NotIJson",
    "Reader",
    "ReaderError",
    "ReaderOptions",
    "ReaderProtocolError",
    "ReaderRefused",
    "ReaderStats",
    "ReaderStatus",
    "SessionLog",
    "SessionTable",
    "Snapshot",
    "StartWord",
    "StoredEvent",
    "SubscriberLagged",
    "Subscription",
    "WindowSubscription",
    "WriterOptions",
    "WriterRefused",
    "WriterStats",
    "WrongSession",
    "__version__",
    "parse_cursor",
    "parse_start",
    "subscribe",
    "valid_incarnation",
    "valid_session_id",
]
