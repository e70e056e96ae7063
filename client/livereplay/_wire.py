"""Wire shapes shared by the daemon and the clients (PROTOCOL.md sections 2, 5 and 7).

Each stored event is encoded once, at append time, as JSON; frames are built by
concatenating stored bytes, so a reader costs no per-event encoding.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Final

import msgspec

U64_MAX: Final = 2**64 - 1
# msgspec cannot bound above int64 in a type; `SessionTable` checks the upper bound.
U64 = Annotated[int, msgspec.Meta(ge=0)]


class EventIn(msgspec.Struct, forbid_unknown_fields=True):
    """One event of an append batch, as a writer sends it."""

    revision: U64
    payload: msgspec.Raw
    position: Annotated[int, msgspec.Meta(ge=1)] | None = None
    turn_id: str | None = None


class BatchIn(msgspec.Struct, forbid_unknown_fields=True):
    events: list[EventIn]
    incarnation: str | None = None


class EventRecord(msgspec.Struct):
    """An event as readers receive it; field order is the protocol's."""

    session_id: str
    replay_incarnation_id: str
    turn_id: str | None
    revision: int
    position: int
    cursor: str
    ts: int
    payload: msgspec.Raw


class EventOut(msgspec.Struct):
    """An event as a client decodes it (payload decoded)."""

    session_id: str
    replay_incarnation_id: str
    turn_id: str | None
    revision: int
    position: int
    cursor: str
    ts: int
    payload: Any


json_encoder: Final = msgspec.json.Encoder()
msgpack_encoder: Final = msgspec.msgpack.Encoder()
batch_decoder: Final = msgspec.json.Decoder(BatchIn)
_any_json: Final = msgspec.json.Decoder()


def encode_event(record: EventRecord) -> bytes:
    return json_encoder.encode(record)


def event_json_to_msgpack(data: bytes) -> bytes:
    """The msgpack form of a stored JSON event, made once per event on first demand.

    JSON can hold numbers msgpack cannot (integers beyond 64 bits, `1e400`): those
    become the nearest msgpack value, a decimal string for such an integer and an
    infinite float for such a number, rather than failing the reader. A payload
    nested deeper than the decoder's stack allows here goes as its JSON text.
    """
    try:
        try:
            return msgpack_encoder.encode(_any_json.decode(data))
        except (msgspec.DecodeError, OverflowError):
            return msgpack_encoder.encode(_fit_msgpack(json.loads(data)))
    except RecursionError:
        return _payload_as_text(data)


_PAYLOAD_KEY: Final = b',"payload":'


def _payload_as_text(data: bytes) -> bytes:
    """The event with its payload as a JSON-text string; its other fields are shallow.

    `payload` is the record's last field, and no string field can hold `,"payload":`
    unescaped, so the first such key is the field's own.
    """
    split = data.index(_PAYLOAD_KEY)
    head: dict[str, Any] = _any_json.decode(data[:split] + b"}")
    head["payload"] = data[split + len(_PAYLOAD_KEY) : -1].decode()
    return msgpack_encoder.encode(head)


def _fit_msgpack(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value <= U64_MAX else str(value)
    if isinstance(value, list):
        return [_fit_msgpack(v) for v in value]
    if isinstance(value, dict):
        return {k: _fit_msgpack(v) for k, v in value.items()}
    return value


_JSON_EVENTS_HEAD: Final = b'{"type":"events","events":['
# fixmap(2) "type": "events", "events": <array>
_MSGPACK_EVENTS_HEAD: Final = b"\x82\xa4type\xa6events\xa6events"


def json_events_frame(events: list[bytes]) -> bytes:
    return _JSON_EVENTS_HEAD + b",".join(events) + b"]}"


def msgpack_array_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x90 | n,))
    if n < 2**16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def msgpack_events_frame(events: list[bytes]) -> bytes:
    return _MSGPACK_EVENTS_HEAD + msgpack_array_header(len(events)) + b"".join(events)
