"""Cursor parsing under arbitrary and near-miss text (beyond tests/core/test_cursor.py).

The parser may only ever answer a `Cursor`, `MalformedCursor` or `WrongSession`;
whatever it accepts names itself again (round-trips); and the daemon classifies
an `after=` exactly as the parser does.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator

import pytest
import requests
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from livereplay import Cursor, MalformedCursor, WrongSession, parse_cursor
from livereplay.protocol import parse_start
from livereplay.protocol.constants import CURSOR_PREFIX, U64_MAX
from tests.fuzz.strategies import cursor_texts, near_miss_cursors, parts, texts
from tests.fuzz.threaded import assert_healthy, threaded_daemon
from tests.support.daemon import InProcessDaemon, fast_settings

NUMBER = re.compile(r"\+?0*(\d+)")


def _parse(text: str) -> Cursor | None:
    try:
        return parse_cursor(text)
    except MalformedCursor:
        return None


@settings(max_examples=400, deadline=None)
@given(cursor_texts)
@example("lashsc2:i:+00:0:s")
@example("lashsc2:i:1:2:s:")
def test_an_accepted_cursor_round_trips_and_names_its_text(text: str) -> None:
    """Anything parsed prints back as the same cursor; only the numbers' spelling may change."""
    cursor = _parse(text)
    if cursor is None:
        return
    assert parse_cursor(str(cursor)) == cursor
    incarnation, revision, position, session_id = text[len(CURSOR_PREFIX) :].split(":", 3)
    assert (incarnation, session_id) == (cursor.incarnation, cursor.session_id)
    for spelled, value in ((revision, cursor.revision), (position, cursor.position)):
        match = NUMBER.fullmatch(spelled)
        assert match is not None and match.group(1).isascii()
        assert int(match.group(1)) == value <= U64_MAX
    assert (
        str(cursor)
        == f"{CURSOR_PREFIX}{incarnation}:{cursor.revision}:{cursor.position}:{session_id}"
    )


@settings(max_examples=400, deadline=None)
@given(cursor_texts, st.one_of(parts, texts))
def test_parse_start_only_ever_refuses_with_the_two_protocol_errors(
    text: str, session_id: str
) -> None:
    """Rule 1: malformed before wrong session; the words and this session's cursors pass."""
    cursor = _parse(text)
    try:
        start = parse_start(text, session_id)
    except MalformedCursor:
        assert cursor is None and text not in ("earliest", "latest")
    except WrongSession:
        assert cursor is not None and cursor.session_id != session_id
    else:
        if text in ("earliest", "latest"):
            assert start == text
        else:
            assert start == cursor and cursor is not None and cursor.session_id == session_id


@pytest.fixture(scope="module")
def daemon() -> Iterator[InProcessDaemon]:
    with threaded_daemon(fast_settings()) as d:
        yield d


SESSION = "fuzz:cursor"


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.one_of(
        cursor_texts,
        near_miss_cursors().map(lambda t: t.rsplit(":", 1)[0] + ":" + SESSION),
    )
)
def test_the_daemon_classifies_after_exactly_as_the_parser(
    daemon: InProcessDaemon, text: str
) -> None:
    """`GET .../events?after=` answers 200, or 400 with the parser's own code; never 5xx."""
    query = urllib.parse.urlencode({"after": text})
    answer = requests.get(f"{daemon.http_url}/v1/sessions/{SESSION}/events?{query}", timeout=10)
    try:
        parse_start(text, SESSION)
    except (MalformedCursor, WrongSession) as exc:
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["code"] == exc.code
    else:
        assert answer.status_code == 200, answer.text
        assert answer.json()["events"] == []


def test_the_daemon_is_healthy_after_the_cursor_fuzz(daemon: InProcessDaemon) -> None:
    assert_healthy(daemon)
