"""Plain-HTTP readers for tests: SSE and NDJSON streams parsed back into protocol frames.

`SseParser` follows the HTML event-stream rules (fields, blank-line dispatch, the last
event id). `frame_of` turns an SSE message back into the section 7 frame it stands
for: a message without `event:` is one event (an `events` frame of one), a named
message carries its frame as `data`. So every transport yields the same frame dicts.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

Frame = dict[str, Any]
SSE = "text/event-stream"
NDJSON = "application/x-ndjson"


@dataclass(frozen=True)
class SseMessage:
    event: str  # "message" when the stream named none
    data: str
    id: str | None  # the last event id after this message (as a browser keeps it)
    id_field: str | None  # the `id:` of this message itself, if it had one
    retry: int | None


class SseParser:
    """Lines in, messages out (the WHATWG event-stream interpretation)."""

    def __init__(self) -> None:
        self.last_event_id: str | None = None
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self._retry: int | None = None

    def line(self, line: str) -> SseMessage | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id = value
            self.last_event_id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> SseMessage | None:
        message = None
        if self._data:
            message = SseMessage(
                self._event or "message",
                "\n".join(self._data),
                self.last_event_id,
                self._id,
                self._retry,
            )
        self._event, self._data, self._id, self._retry = "", [], None, None
        return message


def frame_of(message: SseMessage) -> Frame:
    data = json.loads(message.data)
    if message.event == "message":
        return {"type": "events", "events": [data]}
    assert data["type"] == message.event, message
    frame: Frame = data
    return frame


async def sse_messages(response: httpx.Response) -> AsyncGenerator[SseMessage, None]:
    parser = SseParser()
    async for line in response.aiter_lines():
        message = parser.line(line)
        if message is not None:
            yield message


async def ndjson_frames(response: httpx.Response) -> AsyncGenerator[Frame, None]:
    async for line in response.aiter_lines():
        if line:
            frame: Frame = json.loads(line)
            yield frame


def stream_path(session_id: str, cursor: str | None) -> str:
    path = f"/v1/sessions/{session_id}/stream"
    return path if cursor is None else f"{path}?cursor={cursor}"


def stream_request(
    client: httpx.AsyncClient,
    session_id: str,
    cursor: str | None,
    accept: str = SSE,
    headers: dict[str, str] | None = None,
) -> Any:
    """`async with stream_request(...) as response:` a reader stream over plain HTTP."""
    return client.stream(
        "GET", stream_path(session_id, cursor), headers={"Accept": accept, **(headers or {})}
    )


class Frames:
    """The frames of one HTTP stream, SSE or NDJSON alike, read one at a time."""

    def __init__(self, response: httpx.Response, accept: str) -> None:
        self.response = response
        self.messages: list[SseMessage] = []  # SSE only: the messages as they came
        if accept == SSE:
            self._frames = self._from_sse(sse_messages(response))
        else:
            self._frames = ndjson_frames(response)

    async def _from_sse(self, messages: AsyncIterator[SseMessage]) -> AsyncIterator[Frame]:
        async for message in messages:
            self.messages.append(message)
            yield frame_of(message)

    async def next(self) -> Frame:
        return await anext(self._frames)

    async def until(self, frame_type: str) -> list[Frame]:
        """Every frame up to and including the first of `frame_type`."""
        frames = []
        while True:
            frame = await self.next()
            frames.append(frame)
            if frame["type"] == frame_type:
                return frames

    async def rest(self) -> list[Frame]:
        """Every frame until the stream ends."""
        return [frame async for frame in self._frames]


def positions(frames: list[Frame]) -> list[int]:
    return [e["position"] for f in frames if f["type"] == "events" for e in f["events"]]
