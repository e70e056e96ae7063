"""Frames for msgpack readers from events stored as JSON."""

import msgspec

from livereplay._wire import event_json_to_msgpack


def test_msgpack_form_keeps_ordinary_values_exactly() -> None:
    data = b'{"a":[1,-2,18446744073709551615,-9223372036854775808,1.5,"x",null,true]}'
    assert msgspec.msgpack.decode(event_json_to_msgpack(data)) == msgspec.json.decode(data)


def test_numbers_msgpack_cannot_hold_become_the_nearest_value_instead_of_failing() -> None:
    data = b'{"big":123456789012345678901234567890,"huge":[1e400,-1e400],"ok":7}'
    assert msgspec.msgpack.decode(event_json_to_msgpack(data)) == {
        "big": "123456789012345678901234567890",
        "huge": [float("inf"), float("-inf")],
        "ok": 7,
    }
