"""How a connection's frames are encoded (PROTOCOL.md section 7): both WebSocket subprotocols.

Control frames (`livereplay.protocol.frames`) are encoded per connection; `events`
frames are the stored event bytes joined, so no event is encoded again on the way out. The same
frames as SSE and NDJSON, for plain-HTTP readers, are codecs too (http_codec.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from websockets.frames import Frame, Opcode

from livereplay.protocol import JSON_SUBPROTOCOL, MSGPACK_SUBPROTOCOL, StoredEvent
from livereplay.protocol.frames import Frame as ProtocolFrame
from livereplay.protocol.frames import json_events_frame, msgpack_events_frame
from livereplay.protocol.records import json_encoder, msgpack_encoder


@dataclass(frozen=True, slots=True)
class Codec:
    """How one connection's frames are encoded, and whether they go as text.

    `name` is the same for every connection whose frames are the same bytes, so a
    live frame is built once per name (broadcast.py).
    """

    name: str
    subprotocol: str | None
    text: bool
    encode: Callable[[Any], bytes]
    events: Callable[[list[StoredEvent]], bytes]
    # Carried in an HTTP response body (SSE, NDJSON: http_codec.py), not WebSocket frames.
    http: bool = False

    def websocket_frame(self, payload: bytes) -> bytes:
        """The whole WebSocket frame of a payload, as a server sends it (unmasked)."""
        opcode = Opcode.TEXT if self.text else Opcode.BINARY
        return Frame(opcode, payload).serialize(mask=False)

    def transport_frame(self, payload: bytes) -> bytes:
        """A payload as its connection carries it whole: a WebSocket frame, or one chunk
        of a chunked HTTP response (what uvicorn writes for a body message)."""
        if self.http:
            return b"%x\r\n%b\r\n" % (len(payload), payload)
        return self.websocket_frame(payload)

    def events_wire(self, events: list[StoredEvent]) -> bytes:
        return self.transport_frame(self.events(events))

    def wire(self, frame: ProtocolFrame) -> bytes:
        return self.transport_frame(self.encode(frame))


def _json_events(events: list[StoredEvent]) -> bytes:
    return json_events_frame([e.data for e in events])


def _msgpack_events(events: list[StoredEvent]) -> bytes:
    return msgpack_events_frame([e.packed for e in events])


JSON: Final = Codec("json", JSON_SUBPROTOCOL, True, json_encoder.encode, _json_events)
MSGPACK: Final = Codec(
    "msgpack", MSGPACK_SUBPROTOCOL, False, msgpack_encoder.encode, _msgpack_events
)
# A client that offers no subprotocol we speak gets JSON, and no subprotocol.
PLAIN_JSON: Final = Codec("json", None, True, json_encoder.encode, _json_events)


def choose_codec(offered: list[str]) -> Codec:
    """The first subprotocol the client offers that we speak; JSON without one otherwise."""
    for name in offered:
        if name == MSGPACK_SUBPROTOCOL:
            return MSGPACK
        if name == JSON_SUBPROTOCOL:
            return JSON
    return PLAIN_JSON
