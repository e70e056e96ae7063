"""HTTP endpoints (PROTOCOL.md section 6): an adapter of service.py.

A route parses the request, calls the service (or the store, for what only HTTP
does), and a `DomainError` becomes its JSON error answer (app.py's handler).
"""

from __future__ import annotations

import json
import math
from typing import Any

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from livereplay.protocol import Cursor, valid_session_id
from livereplay.protocol.cursor import parse_u64
from livereplay.protocol.frames import gap_body
from livereplay.protocol.ijson import MAX_DEPTH, batch_is_ijson
from livereplay.protocol.records import BatchIn, batch_decoder, json_encoder

from . import longpoll, service
from .auth import ReaderGrant, bearer
from .errors import RETRY_AFTER_S, DomainError
from .state import AppState
from .store import SessionInfo, Store

MAX_PAGE = 1000
DEFAULT_PAGE = 256
MAX_WAIT_MS = 30_000  # a long-poll page's longest wait


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json_encoder.encode(content)


def error_response(
    status: int, code: str, message: str, retry_after_s: float | None = None
) -> Response:
    """The JSON error body; a 429 or 503 always says when to retry (at least 1 s)."""
    headers = None
    if status in (429, 503):
        headers = {"Retry-After": retry_after_header(retry_after_s)}
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def error_answer(error: DomainError) -> Response:
    return error_response(error.status, error.code, error.message, error.retry_after_s)


def retry_after_header(seconds: float | None) -> str:
    return str(max(1, math.ceil(seconds or 1)))


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.livereplay
    return state


def _token(request: Request) -> str | None:
    """A bearer token, or `?token=` (what a browser's fetch or page link can carry)."""
    return bearer(request.headers.get("authorization")) or request.query_params.get("token")


request_token = _token  # for the HTTP reader stream (httpstream.py)


def _as_reader(request: Request) -> str:
    """The session id of a read, once the caller may read it."""
    session_id: str = request.path_params["session_id"]
    _state(request).auth.check_reader(_token(request), session_id)
    return service.checked_session_id(session_id)


def _as_writer(request: Request) -> str:
    _state(request).auth.check_writer(bearer(request.headers.get("authorization")))
    return service.checked_session_id(request.path_params["session_id"])


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    value = parse_u64(text)
    if value is None or not low <= value <= high:
        raise DomainError("invalid_query", f"`{name}` must be an integer in {low}..{high}")
    return value


def _info_body(info: SessionInfo, readers: int) -> dict[str, Any]:
    return {
        "session_id": info.session_id,
        "incarnation": info.incarnation,
        "tail_cursor": str(info.tail_cursor),
        "retained_events": info.retained_events,
        "retained_bytes": info.retained_bytes,
        "readers": readers,
    }


async def get_cursor(request: Request) -> Response:
    state = _state(request)
    session_id = _as_reader(request)
    revision_text = request.query_params.get("revision")
    revision = None if revision_text is None else parse_u64(revision_text)
    if revision_text is not None and revision is None:
        raise DomainError("invalid_query", "`revision` must be an unsigned 64-bit integer")
    info = await service.session_info(state, session_id)
    tail = info.tail_cursor
    cursor = (
        tail if revision is None else Cursor(tail.incarnation, revision, tail.position, session_id)
    )
    return JSONResponse(
        {
            "session_id": session_id,
            "cursor": str(cursor),
            "incarnation": info.incarnation,
            "revision": cursor.revision,
            "position": tail.position,
            "earliest_cursor": None if info.earliest_cursor is None else str(info.earliest_cursor),
            "retained_events": info.retained_events,
            "retained_bytes": info.retained_bytes,
        }
    )


async def get_events(request: Request) -> Response:
    state = _state(request)
    session_id = _as_reader(request)
    start = service.start_of(request.query_params.get("after"), session_id, "after")
    limit = _int_param(request, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
    wait_ms = _int_param(request, "wait_ms", 0, 0, MAX_WAIT_MS)
    events, gap, next_cursor, caught_up = await longpoll.read_page(
        request.scope, state, session_id, start, limit, wait_ms
    )
    body = (
        b'{"events":['
        + b",".join(e.data for e in events)
        + b'],"gap":'
        + json_encoder.encode(None if gap is None else gap_body(gap))
        + b',"next_cursor":'
        + json_encoder.encode(str(next_cursor))
        + b',"caught_up":'
        + (b"true" if caught_up else b"false")
        + b"}"
    )
    return Response(body, media_type="application/json")


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise DomainError("batch_too_large", f"a batch is at most {limit} bytes")
    chunks = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise DomainError("batch_too_large", f"a batch is at most {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        # Gone mid-body, or timed out (protocols.py answered 408): no one reads this.
        raise DomainError("client_disconnected", "the body was not sent whole") from None
    return b"".join(chunks)


def decode_batch(body: bytes) -> BatchIn:
    # JSON is UTF-8; msgspec would store a payload that is not as it came (and raise
    # UnicodeDecodeError, not DecodeError, for such a string elsewhere).
    if not body.isascii():
        try:
            body.decode()
        except UnicodeDecodeError:
            raise DomainError("invalid_body", "the body is not UTF-8") from None
    try:
        batch = batch_decoder.decode(body)
    except msgspec.ValidationError as exc:
        code = "invalid_event" if "$.events[" in str(exc) else "invalid_body"
        raise DomainError(code, str(exc)) from None
    except msgspec.DecodeError as exc:
        if _json_with_lone_surrogates(body):
            message = "a string is not valid Unicode (a lone surrogate)"
            raise DomainError("invalid_event", message) from None
        raise DomainError("invalid_body", f"not valid JSON: {exc}") from None
    except RecursionError:
        # The batch's own shape is shallow and checked as it is read: only a payload nests.
        message = f"a payload is nested deeper than {MAX_DEPTH} levels"
        raise DomainError("invalid_event", message) from None
    return batch  # the payloads are views of the body; the store copies them into records


def _json_with_lone_surrogates(body: bytes) -> bool:
    """Whether a body msgspec refused is JSON once lone surrogate escapes are allowed
    (RFC 8259 allows them, I-JSON does not). Only on the error path: it is slow."""
    try:
        json.loads(body)
    except (ValueError, RecursionError):
        return False
    return True


async def post_events(request: Request) -> Response:
    state = _state(request)
    session_id = _as_writer(request)
    try:
        body = await read_body(request, state.settings.max_batch_bytes)
        batch = decode_batch(body)
    except DomainError as refused:
        # A batch refused before the store sees it counts as one, as on the ingest socket.
        state.metrics.append_refused.labels(refused.code).inc()
        raise
    # All payloads checked in one decode of the body; if that finds one that is not
    # I-JSON, the service checks them one by one to say which and why.
    checked = batch_is_ijson(body, [event.payload for event in batch.events])
    result = await service.append(
        state,
        session_id,
        batch.incarnation,
        batch.events,
        client_address(request),
        payloads_checked=checked,
    )
    return JSONResponse(
        {
            "accepted": result.accepted,
            "duplicates": result.duplicates,
            "cursors": result.cursor_texts(),
            "tail_cursor": None if result.tail_cursor is None else str(result.tail_cursor),
        }
    )


async def post_trim(request: Request) -> Response:
    state = _state(request)
    session_id = _as_writer(request)
    trimmed = await state.store.trim(session_id)
    if trimmed is None:
        raise service.unknown_session(session_id)
    return JSONResponse({"trimmed": trimmed})


async def delete_session(request: Request) -> Response:
    state = _state(request)
    session_id = _as_writer(request)
    if not await state.store.delete(session_id):
        raise service.unknown_session(session_id)
    return Response(status_code=204)


async def list_sessions(request: Request) -> Response:
    state = _state(request)
    grant = state.auth.listing_grant(_token(request))
    after = request.query_params.get("after")
    limit = _int_param(request, "limit", 100, 1, MAX_PAGE)
    # One more than a page tells whether another follows, so the last page says so.
    listed = await _visible_sessions(state.store, grant, after, limit + 1)
    page = listed[:limit]
    readers = state.store.changes.readers
    return JSONResponse(
        {
            "sessions": [_info_body(info, readers.get(info.session_id, 0)) for info in page],
            "next_after": page[-1].session_id if len(listed) > limit else None,
        }
    )


async def _visible_sessions(
    store: Store, grant: ReaderGrant | None, after: str | None, limit: int
) -> list[SessionInfo]:
    """Only sessions the grant covers, paged within its range: a page is never short
    for ids the caller may not see, and no id outside the range is ever named."""
    if grant is None:
        return await store.list_sessions(after, limit)
    if grant.session_id is not None:
        session_id = grant.session_id
        if not valid_session_id(session_id) or (after is not None and session_id <= after):
            return []
        info = await store.info(session_id)
        return [] if info is None else [info]
    return await store.list_sessions(after, limit, prefix=grant.session_prefix)


def client_address(request: Request | WebSocket) -> str:
    return request.client.host if request.client else "unknown"


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    state = _state(request)
    if state.stopping or not await state.store.ready():
        headers = {"Retry-After": retry_after_header(RETRY_AFTER_S["unavailable"])}
        return JSONResponse({"status": "unavailable"}, status_code=503, headers=headers)
    return JSONResponse({"status": "ready", "instance": state.store.instance_id})


async def metrics(request: Request) -> Response:
    return Response(
        generate_latest(_state(request).metrics.registry), media_type=CONTENT_TYPE_LATEST
    )
