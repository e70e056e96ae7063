"""The livereplay protocol (docs/PROTOCOL.md) as plain synchronous code: no I/O, no clock.

What the daemon, the clients, the tests and the benchmarks share lives here, each
thing once: identities and cursors (`cursor`), the event record (`records`),
reader frames (`frames`) and ingest messages (`ingest`) as msgspec structs, I-JSON
payloads (`ijson`), the bounded session log and its retention (`session_log`), the
read-rule table (`rules`), one error hierarchy (`errors`) and the constants.
Every module is public and declares its names; this package re-exports the ones
most code needs.
"""

from .clock import Clock, now_ms
from .constants import (
    CURSOR_PREFIX,
    INGEST_PATH,
    INGEST_SUBPROTOCOL,
    JSON_SUBPROTOCOL,
    MIN_KEY_BYTES,
    MSGPACK_SUBPROTOCOL,
    PROTOCOL_VERSION,
    SESSION_ID_RULE,
    TOKEN_SUBPROTOCOL_PREFIX,
    U64_MAX,
    MiB,
)
from .cursor import (
    Cursor,
    StartWord,
    parse_cursor,
    parse_start,
    valid_incarnation,
    valid_session_id,
)
from .errors import (
    AppendRefused,
    InvalidSessionId,
    LiveReplayError,
    MalformedCursor,
    NotIJson,
    ProtocolError,
    WrongSession,
)
from .frames import (
    CaughtUpFrame,
    ErrorFrame,
    EventsFrame,
    Frame,
    GapBody,
    GapFrame,
    HeartbeatFrame,
    HelloFrame,
)
from .records import EventIn, EventOut, NewEvent
from .rules import CaughtUp, Gap, GapDetail, GapReason, Head, ReadProgress, Snapshot, read_page
from .session_log import AppendResult, Limits, SessionLog, SessionTable, StoredEvent
from .tokens import mint_reader_token

__all__ = [
    "CURSOR_PREFIX",
    "INGEST_PATH",
    "INGEST_SUBPROTOCOL",
    "JSON_SUBPROTOCOL",
    "MIN_KEY_BYTES",
    "MSGPACK_SUBPROTOCOL",
    "PROTOCOL_VERSION",
    "SESSION_ID_RULE",
    "TOKEN_SUBPROTOCOL_PREFIX",
    "U64_MAX",
    "AppendRefused",
    "AppendResult",
    "CaughtUp",
    "CaughtUpFrame",
    "Clock",
    "Cursor",
    "ErrorFrame",
    "EventIn",
    "EventOut",
    "EventsFrame",
    "Frame",
    "Gap",
    "GapBody",
    "GapDetail",
    "GapFrame",
    "GapReason",
    "Head",
    "HeartbeatFrame",
    "HelloFrame",
    "InvalidSessionId",
    "Limits",
    "LiveReplayError",
    "MalformedCursor",
    "MiB",
    "NewEvent",
    "NotIJson",
    "ProtocolError",
    "ReadProgress",
    "SessionLog",
    "SessionTable",
    "Snapshot",
    "StartWord",
    "StoredEvent",
    "WrongSession",
    "mint_reader_token",
    "now_ms",
    "parse_cursor",
    "parse_start",
    "read_page",
    "valid_incarnation",
    "valid_session_id",
]
