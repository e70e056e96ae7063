"""livereplay: bounded, resumable live replay of agent-runtime sessions.

What runtimes and hosts import: the writer (`LiveReplayClient`), the reader
(`subscribe`, `Reader`) and the few protocol names their answers carry. The
protocol itself (cursors, frames, the session log, the rule table) is the public
`livereplay.protocol` package. This distribution depends only on msgspec and
websockets; the daemon is the `livereplay-server` distribution.
"""

from importlib.metadata import PackageNotFoundError, version

from .protocol.cursor import Cursor, StartWord, parse_cursor
from .protocol.errors import (
    AppendRefused,
    LiveReplayError,
    MalformedCursor,
    NotIJson,
    ProtocolError,
    WrongSession,
)
from .protocol.records import EventOut
from .protocol.rules import CaughtUp, Gap, GapDetail, GapReason
from .protocol.session_log import Limits
from .reader.client import Reader, ReaderOptions, ReaderStatus, subscribe
from .reader.errors import ReaderError, ReaderProtocolError, ReaderRefused
from .reader.machine import ReaderStats
from .writer.client import ClientClosed, LiveReplayClient, WriterStats
from .writer.local_reads import SubscriberLagged, WindowSubscription
from .writer.machine import WriterRefused
from .writer.options import WriterOptions

try:
    __version__ = version("livereplay")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "AppendRefused",
    "CaughtUp",
    "ClientClosed",
    "Cursor",
    "EventOut",
    "Gap",
    "GapDetail",
    "GapReason",
    "Limits",
    "LiveReplayClient",
    "LiveReplayError",
    "MalformedCursor",
    "NotIJson",
    "ProtocolError",
    "Reader",
    "ReaderError",
    "ReaderOptions",
    "ReaderProtocolError",
    "ReaderRefused",
    "ReaderStats",
    "ReaderStatus",
    "StartWord",
    "SubscriberLagged",
    "WindowSubscription",
    "WriterOptions",
    "WriterRefused",
    "WriterStats",
    "WrongSession",
    "__version__",
    "parse_cursor",
    "subscribe",
]
