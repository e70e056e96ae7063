"""Wire shapes shared by the daemon and the clients (PROTOCOL.md sections 2, 5 and 7).

Each stored event is encoded once, at append time, as JSON; frames are built by
concatenating stored bytes, so a reader costs no per-event encoding.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Protocol

import msgspec

# msgspec cannot bound above int64 in a type; `SessionTable` checks the upper bound.
U64 = Annotated[int, msgspec.Meta(ge=0)]


class EventIn(msgspec.Struct, forbid_unknown_fields=True):
    """One event of an append batch, as a writer sends it."""

    revision: U64
    payload: msgspec.Raw
    position: Annotated[int, msgspec.Meta(ge=1)] | None = None
    turn_id: str | None = None


class NewEvent(Protocol):
    """An event to append, as any channel carries it (`EventIn` over HTTP, the ingest
    socket's `IngestEvent`): the payload is its JSON text, checked and kept as it is."""

    @property
    def revision(self) -> int: ...
    @property
    def payload(self) -> bytes | msgspec.Raw: ...
    @property
    def position(self) -> int | None: ...
    @property
    def turn_id(self) -> str | None: ...


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


class RecordEncoder:
    """Events as readers receive them (the fields of `EventRecord`, in order), for one
    batch: built around each payload's bytes as they came, never re-encoding them.

    What every event of the batch shares is joined once. Session ids and incarnations
    are of characters JSON never escapes, so only a turn id needs the encoder. Each
    record is allocated to its exact size: msgspec's own buffers keep room to spare,
    which a retained event would pay for.
    """

    __slots__ = ("_cursor", "_head", "_no_turn", "_tail")

    def __init__(self, session_id: str, incarnation: str, ts_ms: int) -> None:
        sid, inc = session_id.encode(), incarnation.encode()
        self._head = b'{"session_id":"' + sid + b'","replay_incarnation_id":"' + inc
        self._no_turn = self._head + b'","turn_id":null'
        self._cursor = b',"cursor":"lashsc2:' + inc + b":"
        self._tail = b":" + sid + b'","ts":' + str(ts_ms).encode() + b',"payload":'

    def encode(
        self, turn_id: str | None, revision: int, position: int, payload: bytes | msgspec.Raw
    ) -> bytes:
        head = self._no_turn if turn_id is None else self._head + _turn(turn_id)
        # One formatting call: the integers are written as digits in C.
        return _RECORD % (
            head,
            revision,
            position,
            self._cursor,
            revision,
            position,
            self._tail,
            payload,
        )


def record_size(
    session_id: str,
    incarnation: str,
    turn_id: str | None,
    revision: int,
    position: int,
    ts_ms: int,
    payload: bytes,
) -> int:
    """The length of the record `encode_record` makes, without copying the payload."""
    envelope = encode_record(session_id, incarnation, turn_id, revision, position, ts_ms, b"")
    return len(envelope) + len(payload)


_RECORD: Final = b'%b,"revision":%d,"position":%d%b%d:%d%b%b}'


def _turn(turn_id: str) -> bytes:
    return b'","turn_id":' + json_encoder.encode(turn_id)


def encode_record(
    session_id: str,
    incarnation: str,
    turn_id: str | None,
    revision: int,
    position: int,
    ts_ms: int,
    payload: bytes | msgspec.Raw,
) -> bytes:
    """One event's record (see `RecordEncoder`, for a whole batch)."""
    return RecordEncoder(session_id, incarnation, ts_ms).encode(
        turn_id, revision, position, payload
    )


def event_json_to_msgpack(data: bytes) -> bytes:
    """The msgpack form of a stored JSON event, made once per event on first demand.

    Payloads are I-JSON (checked at append), so every value has an exact msgpack form.
    It is copied to its exact size: msgspec's buffer keeps room to spare.
    """
    return bytes(memoryview(msgpack_encoder.encode(_any_json.decode(data))))


def msgpack_array_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x90 | n,))
    if n < 2**16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")
