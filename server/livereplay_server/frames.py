"""Server-to-reader frames (PROTOCOL.md section 7) in both subprotocols.

Control frames are small dicts encoded per connection; `events` frames are the
stored event bytes joined, so no event is encoded again on the way out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from livereplay import Cursor, Gap, StoredEvent
from livereplay._wire import (
    json_encoder,
    json_events_frame,
    msgpack_encoder,
    msgpack_events_frame,
)

JSON_SUBPROTOCOL: Final = "livereplay.v1.json"
MSGPACK_SUBPROTOCOL: Final = "livereplay.v1.msgpack"
SUBPROTOCOLS: Final = (JSON_SUBPROTOCOL, MSGPACK_SUBPROTOCOL)


def _text(cursor: Cursor | None) -> str | None:
    return None if cursor is None else str(cursor)


def gap_body(gap: Gap) -> dict[str, Any]:
    """The gap's fields, as in a `gap` frame and an HTTP page's `gap` object."""
    return {
        "session_id": gap.session_id,
        "requested_cursor": gap.requested_cursor,
        "latest_cursor": _text(gap.latest_cursor),
        "latest_revision": gap.latest_revision,
        "reason": gap.reason.value,
        "detail": gap.detail.value,
        "earliest_cursor": _text(gap.earliest_cursor),
    }


def hello(
    session_id: str, cursor: Cursor | None, head: Cursor | None, heartbeat_s: float
) -> dict[str, Any]:
    return {
        "type": "hello",
        "protocol": 1,
        "session_id": session_id,
        "cursor": _text(cursor),
        "head": _text(head),
        "heartbeat_s": heartbeat_s,
    }


def gap(g: Gap) -> dict[str, Any]:
    return {"type": "gap", **gap_body(g)}


def caught_up(cursor: Cursor | None) -> dict[str, Any]:
    return {"type": "caught_up", "cursor": _text(cursor)}


def heartbeat(head: Cursor | None) -> dict[str, Any]:
    return {"type": "heartbeat", "head": _text(head)}


def error(code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message}


@dataclass(frozen=True, slots=True)
class Codec:
    """How one connection's frames are encoded, and whether they go as text."""

    subprotocol: str | None
    text: bool
    encode: Callable[[Any], bytes]
    events: Callable[[list[StoredEvent]], bytes]


def _json_events(events: list[StoredEvent]) -> bytes:
    return json_events_frame([e.data for e in events])


def _msgpack_events(events: list[StoredEvent]) -> bytes:
    return msgpack_events_frame([e.packed for e in events])


def choose_codec(offered: list[str]) -> Codec:
    """The first subprotocol the client offers that we speak; JSON without one otherwise."""
    for name in offered:
        if name == MSGPACK_SUBPROTOCOL:
            return Codec(name, False, msgpack_encoder.encode, _msgpack_events)
        if name == JSON_SUBPROTOCOL:
            return Codec(name, True, json_encoder.encode, _json_events)
    return Codec(None, True, json_encoder.encode, _json_events)
