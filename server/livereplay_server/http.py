"""HTTP endpoints (PROTOCOL.md section 6), thin over the store and the rule table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from livereplay import (
    AppendRefused,
    Cursor,
    MalformedCursor,
    StartWord,
    WrongSession,
    parse_start,
    valid_session_id,
)
from livereplay._cursor import parse_u64
from livereplay._rules import read_page
from livereplay._wire import BatchIn, batch_decoder, json_encoder

from .auth import AuthError, bearer
from .frames import gap_body
from .limits import LimitExceeded
from .state import AppState
from .store import SessionInfo, StoreUnavailable

MAX_PAGE = 1000
DEFAULT_PAGE = 256

REFUSAL_STATUS = {
    "incarnation_superseded": 409,
    "event_too_large": 413,
    "batch_too_large": 413,
    "invalid_incarnation": 400,
    "invalid_event": 400,
    "too_many_sessions": 429,
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json_encoder.encode(content)


def error_response(status: int, code: str, message: str) -> Response:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.livereplay
    return state


def _token(request: Request) -> str | None:
    """A bearer token, or `?token=` (what a browser's fetch or page link can carry)."""
    return bearer(request.headers.get("authorization")) or request.query_params.get("token")


def _guard(check: Callable[[], object]) -> None:
    try:
        check()
    except AuthError as exc:
        raise ApiError(exc.status, exc.code, exc.message) from None


def _as_reader(request: Request) -> str:
    """The session id of a read, once the caller may read it."""
    state = _state(request)
    session_id: str = request.path_params["session_id"]
    _guard(lambda: state.auth.check_reader(_token(request), session_id))
    return _session_id(request)


def _as_writer(request: Request) -> str:
    state = _state(request)
    _guard(lambda: state.auth.check_writer(bearer(request.headers.get("authorization"))))
    return _session_id(request)


def _session_id(request: Request) -> str:
    session_id: str = request.path_params["session_id"]
    if not valid_session_id(session_id):
        raise ApiError(
            400,
            "invalid_session_id",
            "a session id is 1..256 characters of A-Z a-z 0-9 . _ ~ : @ + -",
        )
    return session_id


def _start(text: str | None, session_id: str) -> Cursor | StartWord:
    if text is None:
        raise ApiError(400, "malformed_cursor", "the `after` query parameter is required")
    try:
        return parse_start(text, session_id)
    except MalformedCursor as exc:
        raise ApiError(400, "malformed_cursor", str(exc)) from None
    except WrongSession as exc:
        raise ApiError(400, "wrong_session", str(exc)) from None


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    value = parse_u64(text)
    if value is None or not low <= value <= high:
        raise ApiError(400, "invalid_query", f"`{name}` must be an integer in {low}..{high}")
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
        raise ApiError(400, "invalid_query", "`revision` must be an unsigned 64-bit integer")
    info = await state.store.info(session_id)
    if info is None:
        raise ApiError(404, "unknown_session", f"no session {session_id!r}")
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
    start = _start(request.query_params.get("after"), session_id)
    limit = _int_param(request, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
    after = start.position if isinstance(start, Cursor) else (0 if start == "earliest" else 2**64)
    snapshot = await state.store.snapshot(
        session_id, min(after, 2**64 - 1), limit, state.settings.max_frame_bytes
    )
    if (
        snapshot.head is None
        and isinstance(start, Cursor)
        and start.position > 0
        and state.in_startup_grace()
    ):
        raise ApiError(503, "starting", "the daemon just started; retry in a moment")
    events, gap, next_cursor, caught_up = read_page(snapshot, start, session_id)
    if gap is not None:
        state.metrics.gaps.labels(gap.reason.value, gap.detail.value).inc()
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
        raise ApiError(413, "batch_too_large", f"a batch is at most {limit} bytes")
    chunks = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, "batch_too_large", f"a batch is at most {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        # Gone mid-body, or timed out (protocols.py answered 408): no one reads this.
        raise ApiError(400, "client_disconnected", "the body was not sent whole") from None
    return b"".join(chunks)


def decode_batch(body: bytes) -> BatchIn:
    # JSON is UTF-8; msgspec would store a payload that is not as it came (and raise
    # UnicodeDecodeError, not DecodeError, for such a string elsewhere).
    if not body.isascii():
        try:
            body.decode()
        except UnicodeDecodeError:
            raise ApiError(400, "invalid_body", "the body is not UTF-8") from None
    try:
        batch = batch_decoder.decode(body)
    except msgspec.ValidationError as exc:
        code = "invalid_event" if "$.events[" in str(exc) else "invalid_body"
        raise ApiError(400, code, str(exc)) from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, "invalid_body", f"not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "invalid_body", "the JSON is nested too deeply") from None
    # Payloads are views into the request body; copy so stored events don't pin it.
    for event in batch.events:
        event.payload = event.payload.copy()
    return batch


async def append(state: AppState, session_id: str, batch: BatchIn, writer: str) -> dict[str, Any]:
    """Append a batch through the store, counting the outcome; shared with the ingest socket.

    `writer` names who appends, for the per-writer rate: the incarnation when the batch
    has one, else the client's address.
    """
    limit = state.settings.max_batch_events
    if len(batch.events) > limit:
        state.metrics.append_refused.labels("batch_too_large").inc()
        raise ApiError(413, "batch_too_large", f"a batch is at most {limit} events")
    try:
        state.append_rate.take(batch.incarnation or writer, len(batch.events))
    except LimitExceeded as exc:
        state.metrics.append_refused.labels(exc.code).inc()
        raise ApiError(429, exc.code, exc.message) from None
    try:
        result = await state.store.append(session_id, batch.incarnation, batch.events)
    except AppendRefused as exc:
        state.metrics.append_refused.labels(exc.code).inc()
        raise ApiError(REFUSAL_STATUS.get(exc.code, 400), exc.code, exc.message) from None
    except StoreUnavailable as exc:
        state.metrics.append_refused.labels("unavailable").inc()
        raise ApiError(503, "unavailable", str(exc)) from None
    state.metrics.appended.inc(result.accepted)
    state.metrics.duplicates.inc(result.duplicates)
    return {
        "accepted": result.accepted,
        "duplicates": result.duplicates,
        "cursors": [str(c) for c in result.cursors],
        "tail_cursor": None if result.tail_cursor is None else str(result.tail_cursor),
    }


async def post_events(request: Request) -> Response:
    state = _state(request)
    session_id = _as_writer(request)
    body = await read_body(request, state.settings.max_batch_bytes)
    batch = decode_batch(body)
    return JSONResponse(await append(state, session_id, batch, client_address(request)))


async def post_trim(request: Request) -> Response:
    state = _state(request)
    session_id = _as_writer(request)
    trimmed = await state.store.trim(session_id)
    if trimmed is None:
        raise ApiError(404, "unknown_session", f"no session {session_id!r}")
    return JSONResponse({"trimmed": trimmed})


async def delete_session(request: Request) -> Response:
    state = _state(request)
    session_id = _as_writer(request)
    if not await state.store.delete(session_id):
        raise ApiError(404, "unknown_session", f"no session {session_id!r}")
    return Response(status_code=204)


async def list_sessions(request: Request) -> Response:
    state = _state(request)
    allows = _listing_scope(state, _token(request))
    after = request.query_params.get("after")
    limit = _int_param(request, "limit", 100, 1, MAX_PAGE)
    listed = await state.store.list_sessions(after, limit)
    page = [info for info in listed if allows(info.session_id)]
    readers = state.store.changes.readers
    return JSONResponse(
        {
            "sessions": [_info_body(info, readers.get(info.session_id, 0)) for info in page],
            # Paging runs over every session, so a page filtered by a token may be short.
            "next_after": listed[-1].session_id if len(listed) == limit else None,
        }
    )


def _listing_scope(state: AppState, token: str | None) -> Callable[[str], bool]:
    """The writer token lists every session; a reader token only the sessions it covers."""
    auth = state.auth
    if not auth.enabled or auth.is_writer(token):
        return lambda session_id: True
    if auth.reader_key is None or token is None:
        raise ApiError(401, "unauthenticated", "listing sessions needs a token")
    try:
        return auth.grant(token).allows
    except AuthError as exc:
        raise ApiError(exc.status, exc.code, exc.message) from None


def client_address(request: Request | WebSocket) -> str:
    return request.client.host if request.client else "unknown"


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    state = _state(request)
    if state.stopping or not await state.store.ready():
        return JSONResponse({"status": "unavailable"}, status_code=503)
    return JSONResponse({"status": "ready", "instance": state.store.instance_id})


async def metrics(request: Request) -> Response:
    return Response(
        generate_latest(_state(request).metrics.registry), media_type=CONTENT_TYPE_LATEST
    )
