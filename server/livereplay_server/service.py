"""The daemon's operations, whatever carries them: HTTP, the ingest socket, the reader streams.

Each transport parses its own input, calls these, and turns a `DomainError` into
its own answer: an HTTP error with `Retry-After` (http.py), an ingest `refused`
with `retry` (ingest.py), an error frame and a close code (admission.py). The
error carries everything those answers need, so no transport keeps a table of
statuses or of what is worth retrying.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, NamedTuple

from livereplay.protocol import (
    AppendRefused,
    AppendResult,
    Cursor,
    Gap,
    MalformedCursor,
    StartWord,
    StoredEvent,
    WrongSession,
    parse_start,
    rules,
    valid_session_id,
)
from livereplay.protocol.clock import now_ms
from livereplay.protocol.constants import SESSION_ID_RULE, U64_MAX
from livereplay.protocol.errors import NotIJson
from livereplay.protocol.ijson import check_json
from livereplay.protocol.records import NewEvent

from .errors import DomainError
from .store import SessionInfo, StoreUnavailable

if TYPE_CHECKING:
    from .state import AppState

STARTING_MESSAGE: Final = "waiting for the writer to re-send its window; retry in a moment"


class Page(NamedTuple):
    """One replay page (PROTOCOL.md section 6, `GET .../events`)."""

    events: list[StoredEvent]
    gap: Gap | None
    next_cursor: Cursor | StartWord
    caught_up: bool


def checked_session_id(session_id: str) -> str:
    if not valid_session_id(session_id):
        raise DomainError("invalid_session_id", SESSION_ID_RULE)
    return session_id


def start_of(text: str | None, session_id: str, parameter: str) -> Cursor | StartWord:
    """Where a read starts, from the transport's `parameter` (a cursor or a word)."""
    if text is None:
        raise DomainError("malformed_cursor", f"the `{parameter}` query parameter is required")
    try:
        return parse_start(text, session_id)
    except (MalformedCursor, WrongSession) as exc:
        raise DomainError(exc.code, exc.message) from None


def stream_start(session_id: str, cursor: str | None) -> Cursor | StartWord:
    """Where a reader's stream starts: refused before anything is sent (PROTOCOL.md 7).

    Auth (`state.auth.check_reader`) and a connection slot (`state.connections`) are
    checked by the adapters, each in its transport's order; both raise `DomainError`.
    """
    return start_of(cursor, checked_session_id(session_id), "cursor")


async def append(
    state: AppState,
    session_id: str,
    incarnation: str | None,
    events: Sequence[NewEvent],
    writer: str,
    *,
    restore_to: int | None = None,
    instance: str | None = None,
    payloads_checked: bool = False,
) -> AppendResult:
    """Append a batch through the store, counting the outcome.

    `writer` names who appends, for the per-writer rate: the incarnation when the batch
    has one, else the client's address. A batch restoring a writer's window
    (`restore_to`) replays what the writer appended before, bounded by its window: the
    rate neither refuses nor counts it. `instance` is the data set a writer was
    welcomed to (see `Store.append`). `payloads_checked`: the transport has already
    checked every payload is I-JSON (HTTP does, on the whole body at once); else each
    is checked here, and the first that is not is refused by its index.
    """
    try:
        checked_session_id(session_id)
        if not payloads_checked:
            _check_payloads(events)
        limit = state.settings.max_batch_events
        if len(events) > limit:
            raise DomainError("batch_too_large", f"a batch is at most {limit} events")
        restoring = restore_to is not None and incarnation is not None
        if restoring and (injected := state.failpoints.hit("refuse_restore")):
            message = "refused by the failpoint refuse_restore"
            raise DomainError("failpoint", message, status=int(injected))
        if not restoring:
            state.append_rate.take(incarnation or writer, len(events))
        result = await state.store.append(
            session_id, incarnation, events, restore_to=restore_to, instance=instance
        )
    except DomainError as refused:
        state.metrics.append_refused.labels(refused.code).inc()
        raise
    except AppendRefused as exc:
        state.metrics.append_refused.labels(exc.code).inc()
        raise DomainError(exc.code, exc.message) from None
    except StoreUnavailable as exc:
        state.metrics.append_refused.labels("unavailable").inc()
        raise DomainError("unavailable", str(exc)) from None
    state.metrics.appended.inc(result.accepted)
    state.metrics.duplicates.inc(result.duplicates)
    return result


def _check_payloads(events: Sequence[NewEvent]) -> None:
    for index, event in enumerate(events):
        try:
            check_json(bytes(event.payload))  # no copy for bytes (ingest)
        except NotIJson as exc:
            raise DomainError(exc.code, f"event {index}: {exc}") from None


async def read_page(
    state: AppState, session_id: str, start: Cursor | StartWord, limit: int
) -> Page:
    """One replay page after `start`, at most `limit` events; 503 `starting` while a
    writer may still be re-sending the events it would hold (rule 2)."""
    after = start.position if isinstance(start, Cursor) else (0 if start == "earliest" else U64_MAX)
    snapshot = await state.store.snapshot(session_id, after, limit, state.settings.max_frame_bytes)
    try:
        page = Page(
            *rules.read_page(
                snapshot, start, session_id, now_ms=now_ms(), grace_until_ms=state.grace_until_ms()
            )
        )
    except rules.MustWait as wait:
        retry_after_s = max(0, wait.until_ms - now_ms()) / 1000
        raise DomainError("starting", STARTING_MESSAGE, retry_after_s) from None
    if page.gap is not None:
        state.metrics.gaps.labels(page.gap.reason.value, page.gap.detail.value).inc()
    return page


async def session_info(state: AppState, session_id: str) -> SessionInfo:
    """A session's state; 503 `starting` for one unknown during the startup grace (the
    writer may be about to re-send its window, as a page of its events answers)."""
    info = await state.store.info(session_id)
    if info is not None:
        return info
    wait_ms = state.grace_until_ms() - now_ms()
    if wait_ms > 0:
        raise DomainError("starting", STARTING_MESSAGE, wait_ms / 1000)
    raise unknown_session(session_id)


def unknown_session(session_id: str) -> DomainError:
    return DomainError("unknown_session", f"no session {session_id!r}")
