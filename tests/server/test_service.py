"""The transport-neutral service and its one refusal, without a socket.

Every transport answers a `DomainError` from the same fields, so these tests pin
what each field means and check that the adapters read them the same way: an HTTP
status and `Retry-After`, an ingest `refused` with `retry`, a WebSocket close code.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import pytest

from livereplay.protocol import AppendResult, Cursor
from livereplay.protocol.constants import (
    CLOSE_CLIENT_FAULT,
    CLOSE_FORBIDDEN,
    CLOSE_TRY_AGAIN,
    CLOSE_UNAUTHENTICATED,
)
from livereplay.protocol.records import EventIn, NewEvent
from livereplay_server import service
from livereplay_server.admission import close_code
from livereplay_server.config import Settings
from livereplay_server.errors import DomainError
from livereplay_server.failpoints import Failpoints
from livereplay_server.http import error_answer
from livereplay_server.ingest import refusal
from livereplay_server.memory import MemoryStore
from livereplay_server.metrics import Metrics
from livereplay_server.state import AppState
from livereplay_server.store import StoreUnavailable


class DownStore(MemoryStore):
    """A backend that cannot be reached for appends."""

    async def append(
        self,
        session_id: str,
        incarnation: str | None,
        events: Sequence[NewEvent],
        *,
        restore_to: int | None = None,
        instance: str | None = None,
    ) -> AppendResult:
        raise StoreUnavailable("connection refused")


def make_state(store: MemoryStore | None = None, **settings: object) -> AppState:
    chosen = Settings(**{"startup_grace_s": 0.0, **settings})  # type: ignore[arg-type]
    store = store or MemoryStore(chosen.limits)
    return AppState(chosen, store, Metrics(store.stats), failpoints=Failpoints())


def events(*revisions: int, payload: bytes = b"{}") -> list[EventIn]:
    return [EventIn(revision=r, payload=msgspec.Raw(payload)) for r in revisions]


def refused_count(state: AppState, code: str) -> float:
    value = state.metrics.registry.get_sample_value(
        "livereplay_appends_refused_total", {"code": code}
    )
    return value or 0.0


# -- the error and its three answers ----------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status", "retryable", "close"),
    [
        ("unauthenticated", 401, False, CLOSE_UNAUTHENTICATED),
        ("token_expired", 401, False, CLOSE_UNAUTHENTICATED),
        ("forbidden", 403, False, CLOSE_FORBIDDEN),
        ("malformed_cursor", 400, False, CLOSE_CLIENT_FAULT),
        ("invalid_event", 400, False, CLOSE_CLIENT_FAULT),
        ("incarnation_superseded", 409, False, CLOSE_CLIENT_FAULT),
        ("batch_too_large", 413, False, CLOSE_CLIENT_FAULT),
        ("rate_limited", 429, True, CLOSE_TRY_AGAIN),
        ("too_many_connections", 429, True, CLOSE_TRY_AGAIN),
        ("too_many_sessions", 429, True, CLOSE_TRY_AGAIN),
        ("starting", 503, True, CLOSE_TRY_AGAIN),
        ("unavailable", 503, True, CLOSE_TRY_AGAIN),
    ],
)
def test_each_transport_answers_a_refusal_from_the_same_fields(
    code: str, status: int, retryable: bool, close: int
) -> None:
    error = DomainError(code, "no")
    assert (error.status, error.retryable) == (status, retryable)
    assert close_code(error) == close
    answer = refusal(7, error)
    assert (answer.id, answer.code, answer.message, answer.retry) == (7, code, "no", retryable)
    assert (answer.retry_after_ms is not None) == retryable
    response = error_answer(error)
    assert response.status_code == status
    assert ("retry-after" in response.headers) == retryable
    assert msgspec.json.decode(response.body)["error"]["code"] == code


def test_a_retry_hint_is_the_same_wait_in_seconds_and_in_milliseconds() -> None:
    error = DomainError("rate_limited", "slow down", 2.5)
    assert error_answer(error).headers["retry-after"] == "3"  # whole seconds, rounded up
    assert refusal(1, error).retry_after_ms == 2500
    # Where nothing better is known, a code brings its own hint.
    assert DomainError("too_many_sessions", "full").retry_after_s == 5.0
    assert DomainError("unavailable", "down").retry_after_s == 1.0
    assert DomainError("invalid_event", "bad").retry_after_s is None


def test_an_injected_status_decides_whether_to_retry() -> None:
    assert DomainError("failpoint", "x", status=503).retryable
    assert not DomainError("failpoint", "x", status=403).retryable
    assert close_code(DomainError("failpoint", "x", status=403)) == CLOSE_FORBIDDEN


# -- append --------------------------------------------------------------------------


async def test_append_accepts_and_counts() -> None:
    state = make_state()
    batch = [_positioned(1, 1), _positioned(2, 2)]
    result = await service.append(state, "s1", "inc1", batch, "client")
    assert (result.accepted, result.duplicates) == (2, 0)
    again = await service.append(state, "s1", "inc1", batch, "client")  # a retry
    assert (again.accepted, again.duplicates) == (0, 2)
    assert state.metrics.registry.get_sample_value("livereplay_events_appended_total") == 2
    assert state.metrics.registry.get_sample_value("livereplay_events_duplicate_total") == 2


@pytest.mark.parametrize(
    ("session_id", "incarnation", "batch", "code", "status"),
    [
        ("bad id", None, events(1), "invalid_session_id", 400),
        ("s1", "not valid!", events(1), "invalid_incarnation", 400),
        ("s1", None, events(1, payload=b'{"a":1e999}'), "invalid_event", 400),
        ("s1", None, events(*range(1, 6)), "batch_too_large", 413),
    ],
)
async def test_append_refuses_with_one_error_and_counts_it(
    session_id: str, incarnation: str | None, batch: list[EventIn], code: str, status: int
) -> None:
    state = make_state(max_batch_events=4)
    with pytest.raises(DomainError) as refused:
        await service.append(state, session_id, incarnation, batch, "client")
    assert (refused.value.code, refused.value.status) == (code, status)
    assert not refused.value.retryable
    assert refused_count(state, code) == 1
    assert await state.store.info("s1") is None  # nothing was written


async def test_payloads_checked_by_the_transport_are_not_checked_again() -> None:
    # HTTP checks the whole body at once; the service must not pay for it twice. A
    # payload that is not I-JSON is refused unless the caller says it checked.
    state = make_state()
    big_number = events(1, payload=b"1e999")
    with pytest.raises(DomainError):
        await service.append(state, "s1", None, big_number, "client")
    result = await service.append(state, "s1", None, events(1), "client", payloads_checked=True)
    assert result.accepted == 1


async def test_a_backend_outage_is_unavailable_and_worth_retrying() -> None:
    settings = Settings(startup_grace_s=0.0)
    state = make_state(DownStore(settings.limits))
    with pytest.raises(DomainError) as refused:
        await service.append(state, "s1", None, events(1), "client")
    error = refused.value
    assert (error.code, error.status, error.retryable, error.retry_after_s) == (
        "unavailable",
        503,
        True,
        1.0,
    )
    assert refused_count(state, "unavailable") == 1


async def test_the_rate_refuses_with_when_to_retry_but_a_restore_is_not_counted() -> None:
    state = make_state(max_append_rate=2.0)  # a burst of 4 events
    await service.append(state, "s1", "inc1", [_positioned(1, 1), _positioned(2, 2)], "w")
    await service.append(state, "s1", "inc1", [_positioned(3, 3), _positioned(4, 4)], "w")
    with pytest.raises(DomainError) as refused:
        await service.append(state, "s1", "inc1", [_positioned(5, 5)], "w")
    assert refused.value.code == "rate_limited"
    assert refused.value.retryable and refused.value.retry_after_s is not None
    assert refused.value.retry_after_s > 0
    # A writer re-sending its window is bounded by that window, not by the rate.
    restored = await service.append(state, "s1", "inc1", [_positioned(5, 5)], "w", restore_to=5)
    assert restored.accepted == 1


async def test_a_refused_restore_failpoint_carries_its_status() -> None:
    state = make_state()
    state.failpoints = Failpoints("refuse_restore=503")
    with pytest.raises(DomainError) as refused:
        await service.append(state, "s1", "inc1", [_positioned(1, 1)], "w", restore_to=1)
    assert (refused.value.code, refused.value.status, refused.value.retryable) == (
        "failpoint",
        503,
        True,
    )


def _positioned(position: int, revision: int) -> EventIn:
    return EventIn(revision=revision, payload=msgspec.Raw(b"{}"), position=position)


# -- reads ---------------------------------------------------------------------------


async def test_read_page_returns_the_events_after_the_start() -> None:
    state = make_state()
    await service.append(state, "s1", None, events(1, 2, 3), "client")
    page = await service.read_page(state, "s1", "earliest", 2)
    assert [e.position for e in page.events] == [1, 2]
    assert not page.caught_up and page.gap is None
    assert isinstance(page.next_cursor, Cursor)
    rest = await service.read_page(state, "s1", page.next_cursor, 10)
    assert [e.position for e in rest.events] == [3]
    assert rest.caught_up


async def test_a_trimmed_start_is_a_gap_and_is_counted() -> None:
    state = make_state(max_events_per_session=2)
    await service.append(state, "s1", None, events(1), "client")
    first = await service.read_page(state, "s1", "earliest", 1)
    assert isinstance(first.next_cursor, Cursor)
    await service.append(state, "s1", None, events(2, 3, 4), "client")  # 1 and 2 trimmed
    page = await service.read_page(state, "s1", first.next_cursor, 10)
    assert page.gap is not None
    counted = state.metrics.registry.get_sample_value(
        "livereplay_gaps_total",
        {"reason": page.gap.reason.value, "detail": page.gap.detail.value},
    )
    assert counted == 1


async def test_an_unknown_session_waits_out_the_startup_grace_then_is_unknown() -> None:
    state = make_state(startup_grace_s=10.0)  # the data set began just now
    with pytest.raises(DomainError) as starting:
        await service.session_info(state, "s1")
    assert (starting.value.code, starting.value.status) == ("starting", 503)
    assert starting.value.retry_after_s is not None and 0 < starting.value.retry_after_s <= 10
    state.store.data_since_ms -= 20_000  # the grace has passed
    with pytest.raises(DomainError) as unknown:
        await service.session_info(state, "s1")
    assert (unknown.value.code, unknown.value.status) == ("unknown_session", 404)


@pytest.mark.parametrize(
    ("session_id", "cursor", "code"),
    [
        ("s1", None, "malformed_cursor"),
        ("s1", "lashsc2:nonsense", "malformed_cursor"),
        ("bad id", "earliest", "invalid_session_id"),
    ],
)
def test_a_stream_that_cannot_start_is_refused_before_anything_is_sent(
    session_id: str, cursor: str | None, code: str
) -> None:
    with pytest.raises(DomainError) as refused:
        service.stream_start(session_id, cursor)
    assert refused.value.code == code
    assert close_code(refused.value) == CLOSE_CLIENT_FAULT


async def test_a_cursor_of_another_session_is_wrong_session() -> None:
    state = make_state()
    await service.append(state, "other", None, events(1), "client")
    page = await service.read_page(state, "other", "earliest", 1)
    with pytest.raises(DomainError) as refused:
        service.stream_start("s1", str(page.next_cursor))
    assert refused.value.code == "wrong_session"
    assert service.stream_start("other", str(page.next_cursor)) == page.next_cursor
