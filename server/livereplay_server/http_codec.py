"""The reader stream's frames as a plain-HTTP body: SSE and NDJSON (PROTOCOL.md 6, 8).

The frames are those of section 7, from the same code as the WebSocket stream; only
their bytes differ. Each is a `Codec`, so the live fan-out builds an `events`
frame once per codec and writes the same chunk to every HTTP reader at that point.

- NDJSON: each frame object on one line, exactly as over WebSocket (JSON form).
- SSE: each event of an `events` frame is one message without `event:` (so
  `onmessage` gets it), `id:` its cursor, `data:` the event; other frames are
  `event: <type>` messages; `caught_up` sets `id:` to its cursor, `gap` to its
  `latest_cursor` (`earliest` when null), so a browser's `Last-Event-ID` is always
  where to resume. The first message (`hello`) carries `retry:`.

Stored events keep their payload's bytes as they came, and JSON may have line breaks
between tokens (never inside a string): they become spaces, so a frame stays one
NDJSON line and one SSE `data:` line, and decodes to the same value.
"""

from __future__ import annotations

from typing import Final

from livereplay.protocol import StoredEvent
from livereplay.protocol.frames import (
    CaughtUpFrame,
    Frame,
    GapFrame,
    HelloFrame,
    frame_type,
    json_events_frame,
)
from livereplay.protocol.records import json_encoder

from .codec import Codec

SSE_MEDIA_TYPE: Final = "text/event-stream"
NDJSON_MEDIA_TYPE: Final = "application/x-ndjson"
# How long a browser's EventSource waits before reconnecting (the `retry:` field).
SSE_RETRY_MS: Final = 1000

_CURSOR_FIELD: Final = b',"cursor":"'


def one_line(data: bytes) -> bytes:
    """JSON with its line breaks (whitespace between tokens) made spaces."""
    if b"\n" in data or b"\r" in data:
        return data.replace(b"\r", b" ").replace(b"\n", b" ")
    return data


def event_cursor(data: bytes) -> bytes:
    """A stored event's cursor, read from its JSON. The fields before `cursor` are ids,
    numbers and a turn id, and inside a JSON string every `"` is escaped, so the first
    `,"cursor":"` is the field itself."""
    start = data.index(_CURSOR_FIELD) + len(_CURSOR_FIELD)
    return data[start : data.index(b'"', start)]


# -- NDJSON ---------------------------------------------------------------------


def _ndjson_encode(frame: Frame) -> bytes:
    return json_encoder.encode(frame) + b"\n"


def _ndjson_events(events: list[StoredEvent]) -> bytes:
    return one_line(json_events_frame([e.data for e in events])) + b"\n"


# -- SSE ------------------------------------------------------------------------


def _sse_id(frame: Frame) -> str | None:
    if isinstance(frame, CaughtUpFrame):
        return frame.cursor  # null only while the session is unknown: the last id still holds
    if isinstance(frame, GapFrame):
        return frame.latest_cursor or "earliest"
    return None


def _sse_encode(frame: Frame) -> bytes:
    head = b"retry: %d\n" % SSE_RETRY_MS if isinstance(frame, HelloFrame) else b""
    head += b"event: " + frame_type(frame).encode() + b"\n"
    cursor = _sse_id(frame)
    if cursor is not None:
        head += b"id: " + cursor.encode() + b"\n"
    return head + b"data: " + json_encoder.encode(frame) + b"\n\n"


def _sse_events(events: list[StoredEvent]) -> bytes:
    return b"".join(
        b"id: " + event_cursor(e.data) + b"\ndata: " + one_line(e.data) + b"\n\n" for e in events
    )


SSE: Final = Codec("sse", None, True, _sse_encode, _sse_events, http=True)
NDJSON: Final = Codec("ndjson", None, True, _ndjson_encode, _ndjson_events, http=True)
_BY_MEDIA_TYPE: Final = {SSE_MEDIA_TYPE: SSE, NDJSON_MEDIA_TYPE: NDJSON}


def media_type(codec: Codec) -> str:
    return SSE_MEDIA_TYPE if codec is SSE else NDJSON_MEDIA_TYPE


def choose_codec(accept: str | None) -> Codec | None:
    """The first of SSE and NDJSON the `Accept` header names; None if it names neither."""
    for item in (accept or "").split(","):
        found = _BY_MEDIA_TYPE.get(item.split(";", 1)[0].strip().lower())
        if found is not None:
            return found
    return None
