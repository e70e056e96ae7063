"""The writer's `/v1/ingest` socket under arbitrary frames, on a real daemon.

Every frame gets exactly one documented answer (docs/INGEST.md): `ack` or
`refused` for a map with an `id`, else an `error` frame and close 4400; a frame
over the size limit closes with 1009. Never 1011, never a partial write (the
session is read back over HTTP after every batch), and the daemon stays healthy.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from livereplay.protocol import valid_session_id
from livereplay.protocol.constants import INGEST_PATH, INGEST_SUBPROTOCOL
from livereplay.protocol.ingest import Ack, Error, Refused, ServerMessage, Welcome, server_decoder
from tests.fuzz.strategies import valid_payloads
from tests.fuzz.threaded import assert_healthy, threaded_daemon
from tests.support.daemon import InProcessDaemon, fast_settings

MAX_BATCH_BYTES = 4096
MAX_FRAME = MAX_BATCH_BYTES + 64 * 1024
FUZZ = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
_ids = itertools.count()


@pytest.fixture(scope="module")
def daemon() -> Iterator[InProcessDaemon]:
    settings = fast_settings(
        max_batch_bytes=MAX_BATCH_BYTES,
        max_event_bytes=1024,
        max_batch_events=8,
        # No rate limit: a 429 would close the socket (1013) and hide the answers under test.
        max_append_rate=0,
    )
    with threaded_daemon(settings) as d:
        yield d
        assert_healthy(d)


@contextlib.contextmanager
def _open(daemon: InProcessDaemon) -> Iterator[ClientConnection]:
    """An ingest socket past its `welcome`."""
    with connect(
        daemon.ws_url + INGEST_PATH,
        subprotocols=[Subprotocol(INGEST_SUBPROTOCOL)],
        max_size=None,
        open_timeout=5,
    ) as ws:
        first = ws.recv(timeout=5)
        assert isinstance(first, bytes)
        welcome = server_decoder.decode(first)
        assert isinstance(welcome, Welcome)
        yield ws


def _close_code(ws: ClientConnection) -> int:
    """Wait for the daemon to close the socket; its close code."""
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=5)
    assert closed.value.rcvd is not None, "closed without a close frame (a crash looks like this)"
    return closed.value.rcvd.code


def _answer(ws: ClientConnection, frame: bytes | str) -> Ack | Refused | Error | int:
    """One frame's answer: a message, or the close code when the daemon closed instead."""
    ws.send(frame)
    try:
        data = ws.recv(timeout=5)
    except ConnectionClosed as exc:
        assert exc.rcvd is not None, "closed without a close frame"
        return exc.rcvd.code
    assert isinstance(data, bytes), "the daemon answers in binary frames"
    message: ServerMessage = server_decoder.decode(data)
    assert not isinstance(message, Welcome)
    if isinstance(message, Error):
        assert message.code == "invalid_frame"
        assert _close_code(ws) == 4400
    return message


def _batch_id(value: Any) -> int | None:
    """The `id` the daemon should answer by: a map whose `id` is an int in 0..2^63-1."""
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        found = value.get("id")
        if type(found) is int and 0 <= found <= 2**63 - 1:
            return found
    return None


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
# Maps that look like messages, so some carry a usable `id` and reach the batch checks.
message_like = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["append", "welcome", "ack", ""]) | msgpack_values,
        "id": st.integers(-2, 2**64 - 1) | msgpack_values,
        "session_id": st.text(max_size=10) | msgpack_values,
        "events": st.lists(msgpack_values, max_size=3) | msgpack_values,
        "incarnation": st.none() | st.text(max_size=10),
        "extra": msgpack_values,
    },
)


@FUZZ
@given(st.lists(st.one_of(msgpack_values, message_like), min_size=1, max_size=4))
def test_any_msgpack_value_is_answered_by_id_or_refused_with_4400(
    daemon: InProcessDaemon, values: list[Any]
) -> None:
    with _open(daemon) as ws:
        for value in values:
            answer = _answer(ws, msgspec.msgpack.encode(value))
            batch_id = _batch_id(value)
            if batch_id is None:
                assert isinstance(answer, Error), answer
                return
            assert isinstance(answer, Ack | Refused), answer
            assert answer.id == batch_id


# Maps holding a value nested deeper than any decoder's stack: {"id": 1, "x": [[[...]]]}.
deep_maps = st.builds(
    lambda depth, id_first: (
        b"\x82"
        + (b"\xa2id\x01\xa1x" if id_first else b"\xa1x")
        + b"\x91" * depth
        + b"\xc0"
        + (b"" if id_first else b"\xa2id\x01")
    ),
    st.integers(900, 5000),
    st.booleans(),
)


@FUZZ
@given(
    st.lists(
        st.binary(max_size=256)
        | st.text(max_size=64)
        | st.sampled_from([b"", "", b"\xc1"])
        | deep_maps,
        min_size=1,
        max_size=3,
    )
)
def test_arbitrary_bytes_and_text_frames_get_an_answer_never_a_crash(
    daemon: InProcessDaemon, frames: list[bytes | str]
) -> None:
    with _open(daemon) as ws:
        for frame in frames:
            answer = _answer(ws, frame)
            assert isinstance(answer, Ack | Refused | Error), answer
            if isinstance(frame, str):
                assert isinstance(answer, Error)
            if isinstance(answer, Error):
                return


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.integers(MAX_FRAME + 1, MAX_FRAME + 16 * 1024), st.booleans())
def test_a_frame_over_the_limit_closes_with_1009(
    daemon: InProcessDaemon, size: int, text: bool
) -> None:
    with _open(daemon) as ws:
        frame: bytes | str = "x" * size if text else b"\x00" * size
        assert _answer(ws, frame) == 1009
    assert_healthy(daemon)


# -- near-valid batches: the session's state is read back after each -------------------------

bad_payloads = st.sampled_from(
    [
        b"",
        b"{",
        b"[1,]",
        b"\xff\xfe",
        b'"\xc3"',
        b"1 2",
        b"NaN",
        b"[" * 3000,
        b"[" * 3000 + b"]" * 3000,  # JSON, nested deeper than the daemon will decode
        b'"' + b"x" * 1100 + b'"',  # an event over max_event_bytes
    ]
) | st.binary(max_size=16)


@st.composite
def batches(draw: st.DrawFn) -> dict[str, Any]:
    """A valid `append` (PROTOCOL.md section 5 shapes), then at most one thing spoiled."""
    incarnation = draw(st.sampled_from([None, "inc-a", "inc-b"]))
    events: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(0, 8))):
        event: dict[str, Any] = {
            "revision": draw(st.integers(0, 2**64 - 1)),
            "payload": draw(valid_payloads),
        }
        if incarnation is not None:
            event["position"] = draw(st.integers(1, 12))
        if draw(st.booleans()):
            event["turn_id"] = draw(st.none() | st.text(max_size=6))
        events.append(event)
    batch: dict[str, Any] = {"type": "append", "id": draw(st.integers(0, 2**63 - 1))}
    batch["events"] = events
    if incarnation is not None:
        batch["incarnation"] = incarnation
    spoil = draw(st.sampled_from(["none"] * 6 + SPOILS))
    if spoil.startswith("event.") and not events:
        return batch
    event = draw(st.sampled_from(events)) if events else {}
    if spoil == "event.payload":
        event["payload"] = draw(bad_payloads)
    elif spoil == "event.revision":
        event["revision"] = -1
    elif spoil == "event.position":
        event["position"] = draw(st.sampled_from([0, -3, 2**64 - 1]))
    elif spoil == "event.no_position":
        event.pop("position", None)
    elif spoil == "event.turn_id":
        event["turn_id"] = 7
    elif spoil == "event.unknown":
        event["unknown"] = 1
    elif spoil == "incarnation":
        batch["incarnation"] = draw(st.sampled_from(["", "bad:inc", "x" * 65, "inc-c"]))
    elif spoil == "events":
        batch["events"] = draw(st.none() | st.just({}) | st.just([1]))
    elif spoil == "unknown":
        batch["unknown"] = True
    elif spoil == "too_many":
        batch["events"] = events * 9  # over max_batch_events
    return batch


SPOILS = [
    "event.payload",
    "event.revision",
    "event.position",
    "event.no_position",
    "event.turn_id",
    "event.unknown",
    "incarnation",
    "events",
    "unknown",
    "too_many",
]


def _info(daemon: InProcessDaemon, session_id: str) -> dict[str, Any] | None:
    """The session as `GET .../cursor` shows it (tail, incarnation, retained counts)."""
    answer = requests.get(f"{daemon.http_url}/v1/sessions/{session_id}/cursor", timeout=10)
    if answer.status_code == 404:
        return None
    assert answer.status_code == 200, answer.text
    info: dict[str, Any] = answer.json()
    return info


def _event_at(daemon: InProcessDaemon, session_id: str, incarnation: str, position: int) -> Any:
    """The retained event at `position`, read just after the position before it."""
    after = f"lashsc2:{incarnation}:0:{position - 1}:{session_id}"
    params: dict[str, str | int] = {"after": after, "limit": 1}
    answer = requests.get(
        f"{daemon.http_url}/v1/sessions/{session_id}/events",
        params=params,
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    page = answer.json()
    assert page["gap"] is None, page
    [event] = page["events"]
    assert event["position"] == position
    return event


def _expected(before: dict[str, Any] | None, batch: dict[str, Any]) -> list[tuple[int, Any]]:
    """PROTOCOL.md section 5: the (position, payload) pairs a batch adds to the session."""
    incarnation = batch.get("incarnation")
    same = before is not None and incarnation in (None, before["incarnation"])
    tail = before["position"] if same and before is not None else 0
    added = []
    for event in batch["events"]:
        position = event.get("position", tail + 1)
        if position > tail:
            added.append((position, json.loads(event["payload"])))
            tail = position
    return added


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(batches(), min_size=1, max_size=4),
    st.sampled_from(["ok", "ok", "ok", "", "a/b", "é", "x" * 257]),
)
def test_near_valid_batches_are_written_whole_or_not_at_all(
    daemon: InProcessDaemon, sequence: list[dict[str, Any]], session_kind: str
) -> None:
    session_id = f"fz-{next(_ids)}" if session_kind == "ok" else session_kind
    valid = valid_session_id(session_id)
    with _open(daemon) as ws:
        for batch in sequence:
            batch["session_id"] = session_id
            before = _info(daemon, session_id) if valid else None
            answer = _answer(ws, msgspec.msgpack.encode(batch))
            assert isinstance(answer, Ack | Refused), answer
            assert answer.id == batch["id"]
            if not valid:
                assert isinstance(answer, Refused), "a batch for an invalid session id was applied"
                continue
            after = _info(daemon, session_id)
            if isinstance(answer, Refused):
                assert not answer.retry, answer
                assert after == before, f"refused ({answer.code}) yet the session changed"
                continue
            added = _expected(before, batch)
            assert answer.accepted == len(added)
            assert answer.accepted + answer.duplicates == len(batch["events"])
            if after is None:
                assert before is None and not added
                continue
            kept = (
                before["retained_events"]
                if before and before["incarnation"] == after["incarnation"]
                else 0
            )
            assert after["retained_events"] == kept + len(added)
            assert answer.tail_cursor == after["cursor"]
            for position, payload in added:
                event = _event_at(daemon, session_id, after["incarnation"], position)
                assert event["payload"] == payload
            if added:
                assert after["position"] == added[-1][0]
