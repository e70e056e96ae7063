"""The reader without a socket: the machine on its own, then `Reader` over a fake transport."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import Sequence
from typing import Any

import msgspec
import pytest

from livereplay import CaughtUp, EventOut, ReaderOptions, ReaderRefused, ReaderStatus
from livereplay.protocol.errors import LiveReplayError
from livereplay.reader.client import Reader
from livereplay.reader.errors import ReaderProtocolError
from livereplay.reader.machine import ReaderMachine, ReaderStats, decode_frame
from livereplay.reader.transport import Closed, ConnectFailed, Connection, ConnectRequest

S = "s-1"
QUICK = ReaderOptions(backoff_base_s=0.001, backoff_cap_s=0.002, connect_timeout_s=0.2)


def cursor(position: int, incarnation: str = "w1") -> str:
    return f"lashsc2:{incarnation}:1:{position}:{S}"


def hello(at: int | None = 0, heartbeat_s: float = 15.0) -> str:
    start = None if at is None else cursor(at)
    return json.dumps(
        {
            "type": "hello",
            "protocol": 1,
            "session_id": S,
            "cursor": start,
            "head": start,
            "heartbeat_s": heartbeat_s,
        }
    )


def events(*positions: int) -> str:
    return json.dumps(
        {
            "type": "events",
            "events": [
                {
                    "session_id": S,
                    "replay_incarnation_id": "w1",
                    "turn_id": None,
                    "revision": 1,
                    "position": p,
                    "cursor": cursor(p),
                    "ts": 1,
                    "payload": {"n": p},
                }
                for p in positions
            ],
        }
    )


def caught_up(at: int) -> str:
    return json.dumps({"type": "caught_up", "cursor": cursor(at)})


# -- the machine --------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    ["not json", '{"type": "nope"}', '{"type": "events"}', b"\xc1", b"\x81\xa4type\xa4nope"],
)
def test_a_message_protocol_1_does_not_have_is_a_protocol_error(message: str | bytes) -> None:
    with pytest.raises(ReaderProtocolError, match="protocol 1 does not have"):
        decode_frame(message)


def test_events_come_out_decoded_with_their_payloads() -> None:
    machine = ReaderMachine("earliest")
    machine.connected()
    machine.receive_message(hello())
    [event] = machine.receive_message(msgspec.msgpack.encode(json.loads(events(1))))
    assert isinstance(event, EventOut)
    assert (event.payload, event.position, event.cursor) == ({"n": 1}, 1, cursor(1))


def test_the_machine_counts_into_the_stats_it_is_given() -> None:
    stats = ReaderStats(connects=3)
    machine = ReaderMachine("earliest", stats)
    machine.connected()
    machine.receive_message(hello())
    machine.receive_message(events(1, 2))
    machine.receive_message(events(2, 3))
    assert machine.stats is stats
    assert (stats.connects, stats.events, stats.duplicates_dropped) == (3, 3, 1)


def test_reader_errors_are_livereplay_errors() -> None:
    assert issubclass(ReaderRefused, LiveReplayError)
    assert issubclass(ReaderProtocolError, LiveReplayError)


# -- Reader over a fake transport ------------------------------------------------


class FakeConnection:
    """Gives its messages, then closes with `close_code`, or stays silent if None."""

    def __init__(self, messages: Sequence[str | bytes], close_code: int | None) -> None:
        self.messages = list(messages)
        self.close_code = close_code
        self.closed_politely: bool | None = None

    async def recv(self) -> str | bytes:
        if self.messages:
            return self.messages.pop(0)
        if self.close_code is None:
            await asyncio.Event().wait()
        raise Closed(self.close_code or 1006)

    async def close(self, polite: bool) -> None:
        self.closed_politely = polite


class FakeTransport:
    """Hands out scripted connections (or raises scripted errors), recording each request."""

    def __init__(self, *script: FakeConnection | Exception) -> None:
        self.script = list(script)
        self.requests: list[ConnectRequest] = []

    async def connect(self, request: ConnectRequest) -> Connection:
        self.requests.append(request)
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    def cursors(self) -> list[str]:
        return [
            urllib.parse.parse_qs(urllib.parse.urlsplit(r.url).query)["cursor"][0]
            for r in self.requests
        ]


async def take(reader: Reader, count: int) -> list[Any]:
    items = []
    async with asyncio.timeout(5):
        for _ in range(count):
            items.append(await anext(reader))
    return items


async def test_a_reconnect_resumes_from_the_machines_cursor_and_drops_duplicates() -> None:
    first = FakeConnection([hello(0), events(1, 2)], close_code=1006)
    second = FakeConnection([hello(2), events(2, 3), caught_up(3)], close_code=None)
    transport = FakeTransport(ConnectFailed("refused"), first, second)
    statuses: list[tuple[ReaderStatus, str | None]] = []
    reader = Reader(
        "http://daemon",
        S,
        "earliest",
        options=QUICK,
        transport=transport,
        on_status=lambda status, reason: statuses.append((status, reason)),
    )
    try:
        items = await take(reader, 4)
    finally:
        await reader.aclose()
    assert [i.position for i in items if isinstance(i, EventOut)] == [1, 2, 3]
    assert isinstance(items[-1], CaughtUp) and str(items[-1].cursor) == cursor(3)
    assert transport.cursors() == ["earliest", "earliest", cursor(2)]
    assert transport.requests[0].url.startswith("ws://daemon/v1/sessions/s-1/stream")
    assert (reader.stats.failed_connects, reader.stats.connects, reader.stats.reconnects) == (
        1,
        2,
        1,
    )
    assert reader.stats.duplicates_dropped == 1
    assert reader.cursor == cursor(3)
    assert first.closed_politely is False
    assert [s for s, _ in statuses] == [
        "reconnecting",
        "connected",
        "reconnecting",
        "connected",
        "caught_up",
        "closed",
    ]
    assert ("reconnecting", "closed 1006") in statuses


async def test_an_error_frame_and_its_4400_close_refuse_for_good() -> None:
    error = json.dumps({"type": "error", "code": "wrong_session", "message": "not yours"})
    refusal = FakeConnection([error], close_code=4400)
    transport = FakeTransport(refusal)
    reader = Reader("http://daemon", S, cursor(1, "w1"), options=QUICK, transport=transport)
    with pytest.raises(ReaderRefused) as refused:
        await take(reader, 1)
    assert (refused.value.close_code, refused.value.code) == (4400, "wrong_session")
    assert "not yours" in str(refused.value)
    assert reader.status == "closed"
    assert len(transport.requests) == 1


async def test_an_http_refusal_from_the_transport_is_final() -> None:
    transport = FakeTransport(ReaderRefused("HTTP 403", http_status=403))
    reader = Reader("http://daemon", S, "earliest", options=QUICK, transport=transport)
    with pytest.raises(ReaderRefused) as refused:
        await take(reader, 1)
    assert refused.value.http_status == 403
    assert reader.status == "closed"


async def test_a_connection_silent_before_hello_is_abandoned_and_retried() -> None:
    silent = FakeConnection([], close_code=None)
    healthy = FakeConnection([hello(0), events(1)], close_code=None)
    transport = FakeTransport(silent, healthy)
    reader = Reader("http://daemon", S, "earliest", options=QUICK, transport=transport)
    try:
        [event] = await take(reader, 1)
    finally:
        await reader.aclose()
    assert isinstance(event, EventOut) and event.position == 1
    assert reader.stats.heartbeat_timeouts == 1
    assert silent.closed_politely is False
    assert healthy.closed_politely is True  # aclose() says goodbye
    assert transport.cursors() == ["earliest", "earliest"]


async def test_a_protocol_error_ends_the_reader() -> None:
    transport = FakeTransport(FakeConnection([events(1)], close_code=None))
    reader = Reader("http://daemon", S, "earliest", options=QUICK, transport=transport)
    with pytest.raises(ReaderProtocolError, match="first frame was not hello"):
        await take(reader, 1)
    assert reader.status == "closed"
