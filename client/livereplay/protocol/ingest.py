"""The ingest WebSocket's messages (docs/INGEST.md), shared by the writer client and the daemon.

Binary frames, MessagePack maps tagged by `type`. A payload travels as its JSON
text inside a msgpack `bin`, so the client encodes it once and the daemon stores
it as is (after checking it is JSON) without decoding it.
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

from .records import U64, msgpack_array_header

PROTOCOL_VERSION: Final = 1

BatchId = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


class IngestEvent(msgspec.Struct, forbid_unknown_fields=True):
    revision: U64
    payload: bytes  # the payload's JSON text
    position: Annotated[int, msgspec.Meta(ge=1)] | None = None
    turn_id: str | None = None


class Append(msgspec.Struct, tag="append", tag_field="type", forbid_unknown_fields=True):
    """One batch for one session, applied whole or refused whole.

    `restore_to`: the batch re-sends the writer's window, up to that position, to a
    daemon whose instance changed; readers ahead of the tail wait for it (rule 4).
    """

    id: BatchId
    session_id: str
    events: list[IngestEvent]
    incarnation: str | None = None
    restore_to: Annotated[int, msgspec.Meta(ge=1)] | None = None


def encode_append(
    batch_id: int,
    session_id: str,
    records: list[bytes],
    incarnation: str | None = None,
    restore_to: int | None = None,
) -> bytes:
    """An `Append` message around events already encoded (each an `IngestEvent`):
    its other fields, then `events` last, so the events' bytes are joined, not re-encoded."""
    fields = encoder.encode(
        {
            "type": "append",
            "id": batch_id,
            "session_id": session_id,
            "incarnation": incarnation,
            "restore_to": restore_to,
        }
    )
    # A map of five pairs is one byte, 0x85: one more pair, `events`, follows them.
    return b"".join(
        (b"\x86", fields[1:], b"\xa6events", msgpack_array_header(len(records)), *records)
    )


class Welcome(msgspec.Struct, tag="welcome", tag_field="type"):
    """The daemon's first message: who it is (a new `instance` means it lost its memory)
    and the limits a batch must keep."""

    protocol: int
    instance: str
    max_batch_bytes: int
    max_batch_events: int
    max_event_bytes: int


class Ack(msgspec.Struct, tag="ack", tag_field="type"):
    """A batch accepted. `holes`: positions it skipped, which the daemon serves as a
    `writer_overflow` gap (the writer's window lost them before they were sent).
    `skipped`: the positions the session's log has skipped since it began, so a writer
    that lost an earlier ack (its daemon died) still counts that ack's holes; None
    from a daemon that does not say."""

    id: int
    accepted: int
    duplicates: int
    tail_cursor: str | None
    holes: int = 0
    skipped: int | None = None


class Refused(msgspec.Struct, tag="refused", tag_field="type"):
    """A batch refused whole: nothing of it was written. With `retry` the daemon closes
    the socket (1013) after this and the writer re-sends later, not before
    `retry_after_ms` when given; without, it never will be accepted."""

    id: int
    code: str
    message: str
    retry: bool = False
    retry_after_ms: int | None = None


class Error(msgspec.Struct, tag="error", tag_field="type"):
    """A fault that ends the connection (close 4400): the frame was not a batch at all."""

    code: str
    message: str


ServerMessage = Welcome | Ack | Refused | Error


class BatchIdOnly(msgspec.Struct):
    """Enough of a bad batch to answer it by id."""

    id: BatchId


encoder: Final = msgspec.msgpack.Encoder()
append_decoder: Final = msgspec.msgpack.Decoder(Append)
event_decoder: Final = msgspec.msgpack.Decoder(IngestEvent)
batch_id_decoder: Final = msgspec.msgpack.Decoder(BatchIdOnly)
server_decoder: Final = msgspec.msgpack.Decoder(ServerMessage)
