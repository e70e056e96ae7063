"""Small helpers to talk to a daemon the way a host or a plain producer does."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import msgspec
from websockets.asyncio.client import ClientConnection, connect

Frame = dict[str, Any]


async def append(
    client: httpx.AsyncClient,
    session_id: str,
    payloads: list[Any],
    *,
    incarnation: str | None = None,
    first_position: int | None = None,
    revision: int = 1,
) -> dict[str, Any]:
    """POST one batch; with an incarnation, positions start at `first_position`."""
    events: list[dict[str, Any]] = []
    for i, payload in enumerate(payloads):
        event: dict[str, Any] = {"revision": revision, "payload": payload}
        if incarnation is not None:
            event["position"] = (first_position or 1) + i
        events.append(event)
    body: dict[str, Any] = {"events": events}
    if incarnation is not None:
        body["incarnation"] = incarnation
    response = await client.post(f"/v1/sessions/{session_id}/events", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def decode(message: str | bytes) -> Frame:
    if isinstance(message, str):
        frame: Frame = json.loads(message)
    else:
        frame = msgspec.msgpack.decode(message)
    return frame


async def recv(ws: ClientConnection, timeout: float = 5.0) -> Frame:
    return decode(await asyncio.wait_for(ws.recv(), timeout))


async def recv_until(ws: ClientConnection, frame_type: str, timeout: float = 5.0) -> list[Frame]:
    """Every frame up to and including the first of `frame_type`."""
    frames = []
    while True:
        frame = await recv(ws, timeout)
        frames.append(frame)
        if frame["type"] == frame_type:
            return frames


def open_stream(url: str, **kwargs: Any) -> Any:
    return connect(url, open_timeout=5, close_timeout=2, max_size=None, **kwargs)


def positions(frames: list[Frame]) -> list[int]:
    return [e["position"] for f in frames if f["type"] == "events" for e in f["events"]]
