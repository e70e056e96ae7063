"""Cursor parsing (PROTOCOL.md section 1): the `lashsc2:` format with Rust `u64` numbers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livereplay import Cursor, MalformedCursor, WrongSession, parse_cursor
from livereplay.protocol import parse_start, valid_incarnation, valid_session_id
from livereplay.protocol.cursor import parse_u64

U64_MAX = 2**64 - 1

SESSION_CHARS = "ABCXYZabcxyz0189._~:@+-"
INCARNATION_CHARS = "ABCXYZabcxyz0189_-"

session_ids = st.text(alphabet=SESSION_CHARS, min_size=1, max_size=256)
incarnations = st.text(alphabet=INCARNATION_CHARS, min_size=1, max_size=64)
u64s = st.integers(min_value=0, max_value=U64_MAX)


def test_a_well_formed_cursor_names_its_four_parts() -> None:
    assert parse_cursor("lashsc2:inc-1:3:42:s-1") == Cursor("inc-1", 3, 42, "s-1")


def test_the_session_id_is_last_and_keeps_its_colons() -> None:
    """The split stops after 4 parts, so session ids with ':' survive."""
    assert parse_cursor("lashsc2:inc:1:2:a:b::c:") == Cursor("inc", 1, 2, "a:b::c:")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", 0),
        ("+0", 0),
        ("+7", 7),
        ("007", 7),
        ("+0000000000000000000000000000001", 1),
        (str(U64_MAX), U64_MAX),
        ("+" + str(U64_MAX), U64_MAX),
        ("000" + str(U64_MAX), U64_MAX),
        # Far more leading zeros than Python's int() takes digits (4,300).
        ("0" * 5000 + "9", 9),
    ],
)
def test_numbers_follow_rust_u64_rules(text: str, value: int) -> None:
    """An optional '+', leading zeros and the whole u64 range are accepted."""
    assert parse_u64(text) == value
    assert parse_cursor(f"lashsc2:i:{text}:{text}:s") == Cursor("i", value, value, "s")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "+",
        "++1",
        "-0",
        "-1",
        "+-1",
        " 1",
        "1 ",
        "1\n",
        "1_000",
        "0x10",
        "1e3",
        "1.0",
        str(2**64),
        str(2**70),
        "9" * 5000,  # int() would raise: more than 4,300 digits
        "1" + "0" * 20,
        "\u0661",  # ARABIC-INDIC DIGIT ONE: int() accepts it, Rust does not
        "\uff11",  # FULLWIDTH DIGIT ONE
        "\u00b2",  # SUPERSCRIPT TWO: str.isdigit() is true for it
    ],
)
def test_numbers_that_rust_u64_refuses_make_the_cursor_malformed(text: str) -> None:
    assert parse_u64(text) is None
    with pytest.raises(MalformedCursor):
        parse_cursor(f"lashsc2:i:{text}:1:s")
    with pytest.raises(MalformedCursor):
        parse_cursor(f"lashsc2:i:1:{text}:s")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "lashsc2:",
        "lashsc2",
        "lashsc1:i:1:2:s",  # the previous format is not accepted
        "LASHSC2:i:1:2:s",
        " lashsc2:i:1:2:s",
        "lashsc3:i:1:2:s",
        "i:1:2:s",
        "lashsc2:i:1:2",  # three parts: no session id
        "lashsc2:i:1",
        "lashsc2:i:1:2:",  # empty session id
        "lashsc2::1:2:s",  # empty incarnation
        "lashsc2:i::2:s",  # empty revision
        "lashsc2:i:1::s",  # empty position
        "lashsc2:::::",
        "earliest",
        "latest",
    ],
)
def test_malformed_cursors_are_refused(text: str) -> None:
    with pytest.raises(MalformedCursor) as info:
        parse_cursor(text)
    assert info.value.code == "malformed_cursor"


def test_parts_outside_the_character_sets_are_still_well_formed() -> None:
    """Section 1: such cursors parse; they simply match no session or incarnation."""
    cursor = parse_cursor("lashsc2:in carnation!:1:2:sess ion/é")
    assert cursor == Cursor("in carnation!", 1, 2, "sess ion/é")
    assert not valid_incarnation(cursor.incarnation)
    assert not valid_session_id(cursor.session_id)


def test_str_is_the_protocol_format() -> None:
    assert str(Cursor("9f0c", 3, 42, "s-1")) == "lashsc2:9f0c:3:42:s-1"


@settings(max_examples=300, deadline=None)
@given(incarnations, u64s, u64s, session_ids)
def test_str_then_parse_round_trips(inc: str, revision: int, position: int, sid: str) -> None:
    cursor = Cursor(inc, revision, position, sid)
    assert parse_cursor(str(cursor)) == cursor
    assert parse_start(str(cursor), sid) == cursor


@settings(max_examples=200, deadline=None)
@given(incarnations, u64s, u64s, session_ids, st.integers(0, 5), st.booleans())
def test_leading_zeros_and_plus_parse_to_the_same_cursor(
    inc: str, revision: int, position: int, sid: str, zeros: int, plus: bool
) -> None:
    sign = "+" if plus else ""
    text = f"lashsc2:{inc}:{sign}{'0' * zeros}{revision}:{'0' * zeros}{position}:{sid}"
    assert parse_cursor(text) == Cursor(inc, revision, position, sid)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30))
def test_parse_u64_agrees_with_a_plain_reading_of_the_rust_rules(text: str) -> None:
    digits = text[1:] if text.startswith("+") else text
    ok = digits != "" and all("0" <= c <= "9" for c in digits) and int(digits) <= U64_MAX
    assert parse_u64(text) == (int(digits) if ok else None)


@pytest.mark.parametrize("word", ["earliest", "latest"])
def test_parse_start_takes_the_two_words(word: str) -> None:
    assert parse_start(word, "s-1") == word


@pytest.mark.parametrize("word", ["Earliest", "LATEST", " latest", "earliest ", "first", ""])
def test_parse_start_refuses_near_miss_words(word: str) -> None:
    with pytest.raises(MalformedCursor):
        parse_start(word, "s-1")


def test_parse_start_refuses_a_cursor_of_another_session() -> None:
    with pytest.raises(WrongSession) as info:
        parse_start("lashsc2:i:1:2:s-2", "s-1")
    assert info.value.code == "wrong_session"


def test_parse_start_compares_the_whole_session_id_including_colons() -> None:
    assert parse_start("lashsc2:i:1:2:a:b", "a:b") == Cursor("i", 1, 2, "a:b")
    with pytest.raises(WrongSession):
        parse_start("lashsc2:i:1:2:a:b", "a")
    with pytest.raises(WrongSession):
        parse_start("lashsc2:i:1:2:a", "a:b")


def test_parse_start_reports_malformed_before_wrong_session() -> None:
    """Rule 1: a malformed cursor is malformed whatever session it names."""
    with pytest.raises(MalformedCursor):
        parse_start("lashsc2:i:x:2:other", "s-1")


@pytest.mark.parametrize(
    ("session_id", "ok"),
    [
        ("s", True),
        ("a" * 256, True),
        ("a" * 257, False),
        ("", False),
        ("A-Z.a_z~0:9@+-", True),
        ("a/b", False),
        ("a b", False),
        ("é", False),
        ("a\n", False),
    ],
)
def test_session_id_character_set(session_id: str, ok: bool) -> None:
    assert valid_session_id(session_id) is ok


@pytest.mark.parametrize(
    ("incarnation", "ok"),
    [
        ("i", True),
        ("a" * 64, True),
        ("a" * 65, False),
        ("", False),
        ("Ab_0-9", True),
        ("a:b", False),
        ("a.b", False),
        ("a b", False),
        ("é", False),
        ("a\n", False),
    ],
)
def test_incarnation_character_set(incarnation: str, ok: bool) -> None:
    assert valid_incarnation(incarnation) is ok
