"""I-JSON payloads (PROTOCOL.md section 2, revision 1.1), and their msgpack form."""

from __future__ import annotations

import json
import math
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from livereplay.protocol.errors import NotIJson
from livereplay.protocol.ijson import MAX_DEPTH, check_json, encode_payload
from livereplay.protocol.records import EventRecord, encode_record, event_json_to_msgpack
from tests.fuzz.strategies import json_values

I64_MIN, U64_MAX = -(2**63), 2**64 - 1


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@given(json_values)
def test_every_i_json_value_is_accepted_and_has_an_exact_msgpack_form(value: Any) -> None:
    data = json.dumps(value).encode()
    check_json(data)
    assert encode_payload(value) == msgspec.json.encode(value)
    event = b'{"payload":' + data + b"}"
    assert msgspec.msgpack.decode(event_json_to_msgpack(event)) == {"payload": value}


@pytest.mark.parametrize(
    "data",
    [
        b"18446744073709551615",
        b"-9223372036854775808",
        b"0.1e-400",  # rounds to 0.0: a finite double
        b"1.7976931348623157e308",
        nested(MAX_DEPTH),
        b'{"k":' * (MAX_DEPTH - 1) + b"{}" + b"}" * (MAX_DEPTH - 1),
        b'"\\ud83d\\ude00"',  # a surrogate pair is one character
        b'"123456789012345678901234567890"',  # digits in a string are text
        b"[" + b",".join([b"[1]"] * 200) + b"]",  # many containers, shallow
    ],
)
def test_values_at_the_edges_of_i_json_are_accepted(data: bytes) -> None:
    check_json(data)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"1e400", "out of range"),
        (b"-1e400", "out of range"),
        (b"1" * 5000, "out of range"),
        (b"18446744073709551616", "outside -2^63..2^64-1"),
        (b"-9223372036854775809", "outside -2^63..2^64-1"),
        (b'{"a":[123456789012345678901234567890]}', "outside -2^63..2^64-1"),
        (nested(MAX_DEPTH + 1), "deeper than 64"),
        (nested(5000), "deeper than 64"),
        (b'"\\ud800"', "not JSON"),
        (b'"\\udc00x"', "not JSON"),
        (b'"\xed\xa0\x80"', "not UTF-8"),  # a surrogate encoded as UTF-8
        (b'"\xff"', "not UTF-8"),
        (b"[1,", "not JSON"),
        (b"1 2", "not JSON"),
        (b"NaN", "not JSON"),
    ],
)
def test_what_json_or_msgpack_cannot_carry_exactly_is_refused(data: bytes, why: str) -> None:
    with pytest.raises(NotIJson, match=why.replace("^", r"\^")) as refused:
        check_json(data)
    assert refused.value.code == "invalid_event"


@pytest.mark.parametrize(
    "value",
    [
        math.inf,
        -math.inf,
        {"a": [1, math.nan]},
        2**64,
        I64_MIN - 1,
        "a\ud800b",
        {"k": "\udfff"},
    ],
)
def test_the_writer_refuses_python_values_that_are_not_i_json(value: Any) -> None:
    with pytest.raises(NotIJson):
        encode_payload(value)


def test_the_writer_refuses_python_values_nested_too_deep() -> None:
    value: Any = []
    for _ in range(MAX_DEPTH):
        value = [value]
    with pytest.raises(NotIJson, match="deeper than 64"):
        encode_payload(value)
    assert encode_payload(value[0]) == nested(MAX_DEPTH)


def test_none_and_ordinary_numbers_are_not_mistaken_for_non_finite_ones() -> None:
    assert encode_payload({"a": None, "b": 1.5, "null": "null"}) == (
        b'{"a":null,"b":1.5,"null":"null"}'
    )
    assert encode_payload([U64_MAX, I64_MIN]) == b"[18446744073709551615,-9223372036854775808]"


def test_json_text_given_as_raw_is_checked_as_it_is() -> None:
    assert encode_payload(msgspec.Raw(b' {"a": null} ')) == b' {"a": null} '
    with pytest.raises(NotIJson):
        encode_payload(msgspec.Raw(b"1e400"))


@given(
    st.text("abcXYZ019._~:@+-", min_size=1, max_size=20),
    st.text("abcXYZ019_-", min_size=1, max_size=64),
    st.none() | st.text(max_size=20),
    st.integers(0, U64_MAX),
    st.integers(1, U64_MAX),
    st.integers(0, 2**63 - 1),
    json_values,
)
def test_a_record_built_around_its_payload_is_what_the_encoder_would_write(
    sid: str, inc: str, turn: str | None, rev: int, pos: int, ts: int, payload: Any
) -> None:
    raw = msgspec.json.encode(payload)
    cursor = f"lashsc2:{inc}:{rev}:{pos}:{sid}"
    record = EventRecord(sid, inc, turn, rev, pos, cursor, ts, msgspec.Raw(raw))
    assert encode_record(sid, inc, turn, rev, pos, ts, raw) == msgspec.json.encode(record)
