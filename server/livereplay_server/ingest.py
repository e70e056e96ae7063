"""The writer's ingest WebSocket (docs/INGEST.md): msgpack batches in, one answer per batch.

Batches go through `service.append`, the same path and metrics as `POST
.../events`, so both channels share one set of rules; a `DomainError` becomes a
`refused`, with `retry` when the error is worth retrying. Messages are handled one at a time in
arrival order: a writer may pipeline batches, and uvicorn stops reading the
socket until the handler asks for the next message, so the daemon never holds
more than one batch per connection. After a refusal worth retrying (backend down,
over a rate) the daemon closes the socket, so no later batch of that writer can
be applied ahead of the refused one and leave a hole.
"""

from __future__ import annotations

import asyncio
import contextlib
import math

import msgspec
from starlette.websockets import WebSocket, WebSocketDisconnect

from livereplay.protocol.constants import CLOSE_CLIENT_FAULT, CLOSE_TRY_AGAIN, INGEST_SUBPROTOCOL
from livereplay.protocol.ingest import (
    PROTOCOL_VERSION,
    Ack,
    Error,
    Refused,
    Welcome,
    append_decoder,
    batch_id_decoder,
    encoder,
)

from . import service, sockets
from .admission import admit, close_quietly
from .errors import DomainError
from .logs import get_logger
from .state import AppState

log = get_logger("livereplay.ingest")

# msgspec raises these besides DecodeError: for a string that is not UTF-8, and for
# values nested deeper than the stack allows.
_UNDECODABLE = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)


class WriterGone(Exception):
    """The writer disconnected or stopped reading answers."""


async def ingest(ws: WebSocket) -> None:
    state: AppState = ws.app.state.livereplay
    offered = list(ws.scope.get("subprotocols", []))

    async def send_error(code: str, message: str) -> None:
        await _send(ws, state, Error(code, message))

    client = await admit(
        ws,
        state,
        INGEST_SUBPROTOCOL if INGEST_SUBPROTOCOL in offered else None,
        state.auth.check_writer,
        send_error,
    )
    if client is None:
        return
    try:
        await _serve(ws, state, client)
    finally:
        state.connections.release(client)


async def _serve(ws: WebSocket, state: AppState, client: str) -> None:
    try:
        if not state.store.instance_known:
            # A welcome must name the data set: a writer compares it to know whether to
            # re-send its window. Until the backend says which it is, try again later.
            await _send(ws, state, Error("starting", "the storage backend is not reachable yet"))
            await close_quietly(ws, CLOSE_TRY_AGAIN)
            return
        welcome = _welcome(state)
        await _send(ws, state, welcome)
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if data is None:
                await _fault(ws, state, "invalid_frame", "ingest frames are binary MessagePack")
                return
            answer = await _handle(state, data, client, welcome.instance)
            if answer is None:
                await _fault(ws, state, "invalid_frame", "not an `append` message with an `id`")
                return
            await _send(ws, state, answer)
            if isinstance(answer, Refused) and answer.retry:
                await close_quietly(ws, CLOSE_TRY_AGAIN)
                return
    except (WriterGone, WebSocketDisconnect):
        pass
    except Exception:
        log.exception("ingest_failed")
        await close_quietly(ws, 1011)


def _welcome(state: AppState) -> Welcome:
    settings = state.settings
    return Welcome(
        protocol=PROTOCOL_VERSION,
        instance=state.store.instance_id,
        max_batch_bytes=settings.max_batch_bytes,
        max_batch_events=settings.max_batch_events,
        max_event_bytes=settings.max_event_bytes,
    )


async def _handle(state: AppState, data: bytes, client: str, instance: str) -> Ack | Refused | None:
    """The answer to one frame; None when it is not a batch at all (a client fault).

    `instance` is the data set this writer was welcomed to: a batch is only applied to it.
    """
    try:
        batch = append_decoder.decode(data)
    except _UNDECODABLE as exc:
        try:
            batch_id = batch_id_decoder.decode(data).id
        except _UNDECODABLE:
            return None
        # Refused before the service sees it, counted like the service's own refusals.
        state.metrics.append_refused.labels("invalid_body").inc()
        return Refused(batch_id, "invalid_body", str(exc))
    try:
        # The payloads' own bytes are what the store keeps: checked there, never re-encoded.
        result = await service.append(
            state,
            batch.session_id,
            batch.incarnation,
            batch.events,
            client,
            restore_to=batch.restore_to,
            instance=instance,
        )
    except DomainError as refused:
        return refusal(batch.id, refused)
    tail = None if result.tail_cursor is None else str(result.tail_cursor)
    return Ack(batch.id, result.accepted, result.duplicates, tail, result.holes, result.skipped)


def refusal(batch_id: int, error: DomainError) -> Refused:
    """The answer to a refused batch: one worth retrying says when, in milliseconds, as
    HTTP's `Retry-After` does in seconds."""
    if not error.retryable:
        return Refused(batch_id, error.code, error.message)
    wait_ms = max(1, math.ceil((error.retry_after_s or 1.0) * 1000))
    return Refused(batch_id, error.code, error.message, True, wait_ms)


async def _send(ws: WebSocket, state: AppState, message: Welcome | Ack | Refused | Error) -> None:
    try:
        async with asyncio.timeout(state.settings.send_timeout_s):
            await ws.send_bytes(encoder.encode(message))
    except TimeoutError:
        log.warning("writer_cut_off", reason="send_timeout")
        if not sockets.abort(ws.scope):
            await close_quietly(ws, 1011)
        raise WriterGone from None
    except (WebSocketDisconnect, OSError, RuntimeError):
        raise WriterGone from None


async def _fault(ws: WebSocket, state: AppState, code: str, message: str) -> None:
    state.metrics.append_refused.labels(code).inc()
    with contextlib.suppress(WriterGone):
        await _send(ws, state, Error(code, message))
    await close_quietly(ws, CLOSE_CLIENT_FAULT)
