"""schemathesis against `/openapi.json` on a real daemon: no 5xx, nothing off the document.

Run against a daemon with no auth, and against one with a writer token and a
reader key as the writer, as a reader and as a stranger (no or a bad token), so
the guarded answers are checked against the document too. Half of the generated
session ids are made to exist first, so success bodies are validated, not only
the 404s of unknown sessions; each run must reach the answers its caller expects.

Operations are driven through `APIOperation.as_strategy` under our own `@given`
(schemathesis' lazy pytest fixture does not run under pytest 9).
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.routing import Route, WebSocketRoute

from livereplay.protocol import mint_reader_token, valid_session_id
from livereplay_server.app import create_app
from livereplay_server.config import Settings
from livereplay_server.openapi import DOCUMENT
from tests.fuzz.threaded import threaded_daemon
from tests.support.daemon import InProcessDaemon, fast_settings

WRITER_TOKEN = "fuzz-writer-token"
READER_KEY = "fuzz-reader-key-of-at-least-32-bytes!!"
WRITER = {"Authorization": f"Bearer {WRITER_TOKEN}"}
# Operations that change state: only the writer token may call them.
WRITES = {"post", "delete"}
CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
]


def _settings(**overrides: Any) -> Settings:
    # Small limits so 413 is reachable by generated bodies.
    return fast_settings(max_batch_bytes=16 * 1024, max_event_bytes=4 * 1024, **overrides)


@pytest.fixture(scope="module")
def open_daemon() -> Iterator[InProcessDaemon]:
    with threaded_daemon(_settings()) as daemon:
        yield daemon


@pytest.fixture(scope="module")
def guarded_daemon() -> Iterator[InProcessDaemon]:
    with threaded_daemon(_settings(writer_token=WRITER_TOKEN, reader_key=READER_KEY)) as daemon:
        yield daemon


def _operations() -> list[Any]:
    """Every documented operation in both modes; negative only where there is input to spoil."""
    found = []
    for path, item in DOCUMENT["paths"].items():
        for method, op in item.items():
            # A long-lived response (the SSE/NDJSON stream) never ends for a request-and-
            # answer tool to check: tests/server/test_http_stream.py covers it.
            if method == "parameters" or op.get("x-long-lived"):
                continue
            modes = [GenerationMode.POSITIVE]
            if "parameters" in item or "parameters" in op or "requestBody" in op:
                modes.append(GenerationMode.NEGATIVE)
            for mode in modes:
                found.append(pytest.param(method, path, mode, id=f"{mode.value} {method} {path}"))
    return found


OPERATIONS = pytest.mark.parametrize(("method", "path", "mode"), _operations())


def _seed(base_url: str, case: schemathesis.Case[Any], headers: dict[str, str]) -> None:
    """Make about half of the valid session ids exist, with one event, before the call."""
    session_id = (case.path_parameters or {}).get("session_id")
    if not isinstance(session_id, str) or not valid_session_id(session_id):
        return
    if zlib.crc32(session_id.encode()) % 2:
        return
    body: dict[str, Any] = {"events": [{"revision": 1, "payload": {"seed": True}}]}
    answer = requests.post(
        f"{base_url}/v1/sessions/{session_id}/events", json=body, headers=headers, timeout=10
    )
    assert answer.status_code == 200, answer.text


def _shorten_long_polls(case: schemathesis.Case[Any]) -> None:
    """A valid `wait_ms` may make a caught-up page wait 30 s: a few ms show the same."""
    query = case.query or {}
    wait = query.get("wait_ms")
    if isinstance(wait, str) and wait.isdigit():
        wait = int(wait)
    if isinstance(wait, int) and not isinstance(wait, bool) and 0 < wait <= 30_000:
        query["wait_ms"] = min(wait, 20)


def _fuzz(
    daemon: InProcessDaemon,
    method: str,
    path: str,
    mode: GenerationMode,
    headers: dict[str, str] | Callable[[schemathesis.Case[Any]], dict[str, str]],
    examples: int = 25,
) -> Counter[int]:
    """Run one operation's examples; the statuses seen, so a test can tell what it reached.
    `headers` may depend on the case (a reader token for the case's session)."""
    schema = schemathesis.openapi.from_url(daemon.http_url + "/openapi.json")
    operation = schema[path][method.upper()]
    statuses: Counter[int] = Counter()

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(mode))
    def run(case: schemathesis.Case[Any]) -> None:
        _seed(daemon.http_url, case, WRITER if daemon.settings.writer_token else {})
        sent = headers(case) if callable(headers) else headers
        _shorten_long_polls(case)
        response = case.call_and_validate(
            base_url=daemon.http_url, headers=sent, checks=CHECKS, timeout=10
        )
        statuses[response.status_code] += 1

    run()
    return statuses


def _succeeded(statuses: Counter[int]) -> bool:
    return any(200 <= status < 300 for status in statuses)


@OPERATIONS
def test_the_open_daemon_answers_as_documented(
    open_daemon: InProcessDaemon, method: str, path: str, mode: GenerationMode
) -> None:
    statuses = _fuzz(open_daemon, method, path, mode, {})
    if mode is GenerationMode.POSITIVE:
        assert _succeeded(statuses), f"no valid request succeeded: {statuses}"


@OPERATIONS
def test_the_guarded_daemon_answers_the_writer_as_documented(
    guarded_daemon: InProcessDaemon, method: str, path: str, mode: GenerationMode
) -> None:
    statuses = _fuzz(guarded_daemon, method, path, mode, WRITER)
    if mode is GenerationMode.POSITIVE:
        assert _succeeded(statuses), f"no valid request succeeded: {statuses}"


@OPERATIONS
def test_the_guarded_daemon_answers_a_reader_as_documented(
    guarded_daemon: InProcessDaemon, method: str, path: str, mode: GenerationMode
) -> None:
    """A reader token for the session reads, and is refused every write with 403."""

    def reader(case: schemathesis.Case[Any]) -> dict[str, str]:
        # No token reads everything (an empty prefix is invalid): one for the case's session.
        session_id = (case.path_parameters or {}).get("session_id")
        scope = session_id if isinstance(session_id, str) and session_id else "fuzz"
        return {"Authorization": f"Bearer {mint_reader_token(READER_KEY, session_id=scope)}"}

    statuses = _fuzz(guarded_daemon, method, path, mode, reader)
    if method in WRITES:
        assert set(statuses) == {403}
    elif mode is GenerationMode.POSITIVE:
        assert _succeeded(statuses), f"no valid request succeeded: {statuses}"


@OPERATIONS
@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer not-a-token"}], ids=["no-token", "bad-token"]
)
def test_the_guarded_daemon_answers_strangers_as_documented_and_never_with_success(
    guarded_daemon: InProcessDaemon,
    method: str,
    path: str,
    mode: GenerationMode,
    headers: dict[str, str],
) -> None:
    statuses = _fuzz(guarded_daemon, method, path, mode, headers, examples=10)
    if path.startswith("/v1/"):
        assert statuses and set(statuses) <= {401, 403}, statuses


def test_the_document_covers_every_route_the_daemon_serves() -> None:
    """A route added without documenting it would escape the fuzzing above."""
    documented = {
        (path, method.upper())
        for path, item in DOCUMENT["paths"].items()
        for method in item
        if method != "parameters"
    }
    for route in create_app(fast_settings()).routes:
        path = getattr(route, "path", "").replace(":str}", "}")
        if isinstance(route, WebSocketRoute):
            assert path in DOCUMENT["x-websockets"], path
        elif isinstance(route, Route) and not path.startswith("/static/"):
            for method in (route.methods or set()) - {"HEAD"}:
                assert (path, method) in documented, (path, method)
