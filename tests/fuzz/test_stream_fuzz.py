"""The reader stream under arbitrary requests and arbitrary reader frames, on a real daemon.

Any session id, cursor and subprotocol list gets `hello` or one `error` frame and
close 4400 (a path with no session segment is the router's handshake refusal);
whatever a reader sends is ignored while it keeps being served; every payload
the daemon accepted reaches readers of both subprotocols. Never 1011.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import urllib.parse
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
import requests
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from livereplay import MalformedCursor, WrongSession
from livereplay.protocol import JSON_SUBPROTOCOL, MSGPACK_SUBPROTOCOL, parse_start, valid_session_id
from livereplay.protocol.ijson import MAX_DEPTH
from livereplay_server.codec import choose_codec
from tests.fuzz.strategies import cursor_texts, valid_payloads
from tests.fuzz.threaded import assert_healthy, threaded_daemon
from tests.support.daemon import InProcessDaemon, fast_settings

MAX_BATCH_BYTES = 16 * 1024
MAX_FRAME = MAX_BATCH_BYTES + 64 * 1024
FUZZ = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
_ids = itertools.count()


@pytest.fixture(scope="module")
def daemon() -> Iterator[InProcessDaemon]:
    with threaded_daemon(fast_settings(max_batch_bytes=MAX_BATCH_BYTES)) as d:
        yield d
        assert_healthy(d)


def _decode(message: str | bytes) -> dict[str, Any]:
    frame: dict[str, Any] = (
        json.loads(message) if isinstance(message, str) else msgspec.msgpack.decode(message)
    )
    return frame


def _close_code(ws: ClientConnection) -> int:
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=5)
    assert closed.value.rcvd is not None, "closed without a close frame (a crash looks like this)"
    return closed.value.rcvd.code


@contextlib.contextmanager
def _stream(
    daemon: InProcessDaemon, path_id: str, query: str, subprotocols: list[str]
) -> Iterator[ClientConnection]:
    url = f"{daemon.ws_url}/v1/sessions/{urllib.parse.quote(path_id, safe='')}/stream"
    offered = [Subprotocol(s) for s in subprotocols] or None
    with connect(url + query, subprotocols=offered, max_size=None, open_timeout=5) as ws:
        yield ws


session_ids = st.one_of(
    st.text("abz09._~:@+-", min_size=1, max_size=12),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=12),
    st.just("x" * 257),
)
subprotocol_lists = st.lists(
    st.sampled_from(
        [JSON_SUBPROTOCOL, MSGPACK_SUBPROTOCOL, "livereplay.token.abc", "livereplay.v2.json"]
    )
    | st.from_regex(r"\A[!#$%&'*+.^_`|~0-9A-Za-z-]{1,16}\Z"),
    max_size=4,
    unique=True,
)


@FUZZ
@given(session_ids, st.none() | cursor_texts, subprotocol_lists)
@example("s", "lashsc2:i:1:2:s", [MSGPACK_SUBPROTOCOL])
@example("s", None, [])
@example("a/b", "earliest", [])
def test_any_request_gets_hello_or_an_error_and_4400(
    daemon: InProcessDaemon, session_id: str, cursor: str | None, subprotocols: list[str]
) -> None:
    query = "" if cursor is None else "?" + urllib.parse.urlencode({"cursor": cursor})
    if session_id == "" or "/" in session_id:
        # No `/v1/sessions/{id}/stream` route matches: the router refuses the handshake.
        with pytest.raises(InvalidStatus), _stream(daemon, session_id, query, subprotocols):
            pass
        return
    codec = choose_codec(subprotocols)
    with _stream(daemon, session_id, query, subprotocols) as ws:
        assert ws.subprotocol == codec.subprotocol
        message = ws.recv(timeout=5)
        assert isinstance(message, str) is codec.text
        frame = _decode(message)
        fault = _expected_fault(session_id, cursor)
        if fault is None:
            assert frame["type"] == "hello", frame
            assert frame["session_id"] == session_id
        else:
            assert frame["type"] == "error", frame
            assert frame["code"] == fault
            assert _close_code(ws) == 4400


def _expected_fault(session_id: str, cursor: str | None) -> str | None:
    """The error code PROTOCOL.md section 7 gives this request; None where `hello` is due."""
    if not valid_session_id(session_id):
        return "invalid_session_id"
    if cursor is None:
        return "malformed_cursor"
    try:
        parse_start(cursor, session_id)
    except (MalformedCursor, WrongSession) as exc:
        return exc.code
    return None


reader_frames = st.lists(
    st.binary(max_size=2048) | st.text(max_size=512) | st.sampled_from([b"", "", "close"]),
    min_size=1,
    max_size=5,
)


@FUZZ
@given(reader_frames, st.sampled_from([[], [JSON_SUBPROTOCOL], [MSGPACK_SUBPROTOCOL]]))
def test_whatever_a_reader_sends_is_ignored_and_it_is_still_served(
    daemon: InProcessDaemon, frames: list[bytes | str], subprotocols: list[str]
) -> None:
    session_id = f"rd-{next(_ids)}"
    with _stream(daemon, session_id, "?cursor=latest", subprotocols) as ws:
        assert _decode(ws.recv(timeout=5))["type"] == "hello"
        assert _decode(ws.recv(timeout=5))["type"] == "caught_up"
        for frame in frames:
            ws.send(frame)
        body: dict[str, Any] = {"events": [{"revision": 1, "payload": {"after": len(frames)}}]}
        answer = requests.post(
            f"{daemon.http_url}/v1/sessions/{session_id}/events", json=body, timeout=10
        )
        assert answer.status_code == 200, answer.text
        served = _decode(ws.recv(timeout=5))
        assert served["type"] == "events"
        assert [e["payload"] for e in served["events"]] == [{"after": len(frames)}]


@settings(
    max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.integers(MAX_FRAME + 1, MAX_FRAME + 16 * 1024), st.booleans())
def test_a_reader_frame_over_the_limit_closes_with_1009(
    daemon: InProcessDaemon, size: int, text: bool
) -> None:
    with _stream(daemon, "big", "?cursor=latest", []) as ws:
        assert _decode(ws.recv(timeout=5))["type"] == "hello"
        assert _decode(ws.recv(timeout=5))["type"] == "caught_up"
        ws.send("x" * size if text else b"\x00" * size)
        assert _close_code(ws) == 1009
    assert_healthy(daemon)


# -- deep payloads: accepted means served, to both subprotocols ------------------------------

# A nesting of arrays (`a`) and single-key objects (`o`), as JSON text and as msgpack bytes.
shapes = st.integers(1, 1200).flatmap(lambda n: st.text("ao", min_size=n, max_size=n))


def _json(shape: str) -> bytes:
    opens = b"".join(b"[" if k == "a" else b'{"k":' for k in shape[:-1])
    closes = b"".join(b"]" if k == "a" else b"}" for k in reversed(shape[:-1]))
    return opens + (b"[]" if shape[-1] == "a" else b"{}") + closes


def _msgpack(shape: str) -> bytes:
    head = b"".join(b"\x91" if k == "a" else b"\x81\xa1k" for k in shape[:-1])
    return head + (b"\x90" if shape[-1] == "a" else b"\x80")


def _post(daemon: InProcessDaemon, session_id: str, payload: bytes) -> requests.Response:
    return requests.post(
        f"{daemon.http_url}/v1/sessions/{session_id}/events",
        data=b'{"events":[{"revision":1,"payload":' + payload + b"}]}",
        timeout=10,
    )


def _assert_served(daemon: InProcessDaemon, session_id: str, shape: str) -> None:
    """Both subprotocols get hello, the event and caught_up: the socket is not closed."""
    payload = _json(shape)
    for subprotocol in (JSON_SUBPROTOCOL, MSGPACK_SUBPROTOCOL):
        with _stream(daemon, session_id, "?cursor=earliest", [subprotocol]) as ws:
            assert _decode(ws.recv(timeout=5))["type"] == "hello"
            events = ws.recv(timeout=5)
            if isinstance(events, str):
                assert events.startswith('{"type":"events"')
                assert payload.decode() in events
            else:
                assert events.startswith(b"\x82\xa4type\xa6events")
                assert _msgpack(shape) in events
            assert _decode(ws.recv(timeout=5))["type"] == "caught_up"


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(shapes)
def test_every_accepted_payload_reaches_json_and_msgpack_readers(
    daemon: InProcessDaemon, shape: str
) -> None:
    """However deeply a payload nests, it is refused at append (deeper than 64 levels) or
    served exactly to both kinds of reader: never a 1011 loop."""
    session_id = f"deep-{next(_ids)}"
    answer = _post(daemon, session_id, _json(shape))
    if len(shape) > MAX_DEPTH:
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["code"] in ("invalid_event", "invalid_body")
        return
    assert answer.status_code == 200, answer.text
    _assert_served(daemon, session_id, shape)


def test_payloads_at_the_depth_limit_reach_msgpack_readers(daemon: InProcessDaemon) -> None:
    """64 levels is the most the protocol allows, and it converts to msgpack exactly;
    one level more is refused at append."""
    deepest = "a" * MAX_DEPTH
    session_id = f"edge-{next(_ids)}"
    assert _post(daemon, session_id, _json(deepest)).status_code == 200
    _assert_served(daemon, session_id, deepest)
    refused = _post(daemon, f"edge-{next(_ids)}", _json(deepest + "a"))
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "invalid_event"


@st.composite
def corrupted(draw: st.DrawFn) -> bytes:
    """A JSON payload with a few arbitrary bytes put in: often not JSON, sometimes not UTF-8."""
    payload = bytearray(draw(valid_payloads))
    for _ in range(draw(st.integers(1, 3))):
        payload.insert(draw(st.integers(0, len(payload))), draw(st.integers(0, 255)))
    return bytes(payload)


# A JSON string of arbitrary bytes: often not UTF-8.
byte_strings = st.binary(min_size=1, max_size=8).map(
    lambda b: b'"' + b.replace(b'"', b"").replace(b"\\", b"") + b'"'
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.one_of(valid_payloads, corrupted(), st.binary(max_size=32), byte_strings))
def test_any_payload_bytes_are_refused_or_served_to_every_reader(
    daemon: InProcessDaemon, payload: bytes
) -> None:
    """An accepted payload is valid JSON in every page and frame; the rest gets a 400."""
    session_id = f"bytes-{next(_ids)}"
    answer = _post(daemon, session_id, payload)
    assert answer.status_code in (200, 400), answer.text
    if answer.status_code == 400:
        assert answer.json()["error"]["code"] in ("invalid_body", "invalid_event")
        return
    try:
        value = json.loads(payload.decode())
    except UnicodeDecodeError:
        pytest.fail(f"accepted a payload that is not UTF-8: {payload!r}")
    page = requests.get(
        f"{daemon.http_url}/v1/sessions/{session_id}/events",
        params={"after": "earliest"},
        timeout=10,
    )
    assert [e["payload"] for e in page.json()["events"]] == [value]
    for subprotocol in (JSON_SUBPROTOCOL, MSGPACK_SUBPROTOCOL):
        with _stream(daemon, session_id, "?cursor=earliest", [subprotocol]) as ws:
            assert _decode(ws.recv(timeout=5))["type"] == "hello"
            frame = _decode(ws.recv(timeout=5))
            assert [e["payload"] for e in frame["events"]] == [value]
