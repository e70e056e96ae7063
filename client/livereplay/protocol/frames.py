"""Server-to-reader frames (PROTOCOL.md section 7), each defined once.

The daemon encodes these structs (JSON or MessagePack; msgspec writes the `type`
tag first, as the protocol shows them) and readers decode them. An `events` frame
is the exception on the way out: the daemon joins the stored records under
`EVENTS_JSON_HEAD` / `EVENTS_MSGPACK_HEAD`, so no event is encoded again, and the
result decodes as `EventsFrame`.
"""

from __future__ import annotations

from typing import Final

import msgspec

from .constants import PROTOCOL_VERSION
from .cursor import Cursor, parse_cursor
from .records import EventOut, msgpack_array_header
from .rules import Gap, GapDetail, GapReason


class HelloFrame(msgspec.Struct, tag="hello", tag_field="type"):
    protocol: int
    session_id: str
    cursor: str | None
    head: str | None
    heartbeat_s: float


class EventsFrame(msgspec.Struct, tag="events", tag_field="type"):
    events: list[EventOut]


class CaughtUpFrame(msgspec.Struct, tag="caught_up", tag_field="type"):
    cursor: str | None


class GapBody(msgspec.Struct):
    """A gap's fields: a `gap` frame's, and an HTTP page's `gap` object."""

    session_id: str
    requested_cursor: str
    latest_cursor: str | None
    latest_revision: int | None
    reason: GapReason
    detail: GapDetail
    earliest_cursor: str | None

    def gap(self) -> Gap:
        return Gap(
            self.session_id,
            self.requested_cursor,
            _cursor(self.latest_cursor),
            self.latest_revision,
            self.reason,
            self.detail,
            _cursor(self.earliest_cursor),
        )


class GapFrame(GapBody, tag="gap", tag_field="type"):
    pass


class HeartbeatFrame(msgspec.Struct, tag="heartbeat", tag_field="type"):
    head: str | None


class ErrorFrame(msgspec.Struct, tag="error", tag_field="type"):
    code: str
    message: str


Frame = HelloFrame | EventsFrame | CaughtUpFrame | GapFrame | HeartbeatFrame | ErrorFrame
json_frame_decoder: Final[msgspec.json.Decoder[Frame]] = msgspec.json.Decoder(Frame)
msgpack_frame_decoder: Final[msgspec.msgpack.Decoder[Frame]] = msgspec.msgpack.Decoder(Frame)


def frame_type(frame: Frame) -> str:
    """The frame's `type`, as it goes on the wire."""
    tag = type(frame).__struct_config__.tag
    assert isinstance(tag, str)
    return tag


def text(cursor: Cursor | None) -> str | None:
    return None if cursor is None else str(cursor)


def _cursor(value: str | None) -> Cursor | None:
    return None if value is None else parse_cursor(value)


def hello_frame(
    session_id: str, cursor: Cursor | None, head: Cursor | None, heartbeat_s: float
) -> HelloFrame:
    return HelloFrame(PROTOCOL_VERSION, session_id, text(cursor), text(head), heartbeat_s)


def gap_fields(
    gap: Gap,
) -> tuple[str, str, str | None, int | None, GapReason, GapDetail, str | None]:
    return (
        gap.session_id,
        gap.requested_cursor,
        text(gap.latest_cursor),
        gap.latest_revision,
        gap.reason,
        gap.detail,
        text(gap.earliest_cursor),
    )


def gap_body(gap: Gap) -> GapBody:
    return GapBody(*gap_fields(gap))


def gap_frame(gap: Gap) -> GapFrame:
    return GapFrame(*gap_fields(gap))


EVENTS_JSON_HEAD: Final = b'{"type":"events","events":['
# fixmap(2) "type": "events", "events": <array>
EVENTS_MSGPACK_HEAD: Final = b"\x82\xa4type\xa6events\xa6events"


def json_events_frame(records: list[bytes]) -> bytes:
    """An `events` frame of stored JSON records, joined as they are."""
    return EVENTS_JSON_HEAD + b",".join(records) + b"]}"


def msgpack_events_frame(records: list[bytes]) -> bytes:
    """An `events` frame of stored msgpack records, joined as they are."""
    return EVENTS_MSGPACK_HEAD + msgpack_array_header(len(records)) + b"".join(records)
