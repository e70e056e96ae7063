"""I-JSON payloads (PROTOCOL.md section 2, revision 1.1).

Every accepted payload can be served exactly both as JSON and as MessagePack, so
what either form cannot carry is refused at append: strings that are not valid
Unicode, integers outside -2^63..2^64-1, numbers that are not finite doubles,
nesting deeper than 64 levels. The daemon checks the bytes a writer sends; the
writer client checks the value it is given before the event enters its window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final

import msgspec

from .errors import NotIJson

MAX_DEPTH: Final = 64

_decoder: Final = msgspec.json.Decoder()
_json: Final = msgspec.json.Encoder()
_msgpack: Final = msgspec.msgpack.Encoder()


def check_json(data: bytes) -> None:
    """Raise `NotIJson` unless `data` is exactly one I-JSON value."""
    try:
        value = _decoder.decode(data)
    except UnicodeDecodeError:
        raise NotIJson("the payload is not UTF-8") from None
    except msgspec.ValidationError as exc:
        # msgspec's own range checks: a number beyond a double, a huge integer.
        raise NotIJson(f"the payload has a number out of range ({exc})") from None
    except msgspec.DecodeError as exc:
        raise NotIJson(f"the payload is not JSON ({exc})") from None
    except RecursionError:
        raise NotIJson(f"the payload is nested deeper than {MAX_DEPTH} levels") from None
    _check_decoded(data, value)


class _Payload(msgspec.Struct):
    payload: Any  # an event's other fields are the batch decoder's to check


class _Payloads(msgspec.Struct):
    events: list[_Payload]


_batch_payloads: Final = msgspec.json.Decoder(_Payloads)


def batch_is_ijson(body: bytes, payloads: Sequence[bytes | msgspec.Raw]) -> bool:
    """Whether every payload of a JSON append batch is I-JSON, checked for the whole body
    at once (one decode, one range check); False says only "look event by event" (with
    `check_json`, which says which event and why). `payloads` are the batch's own, as
    its decoder read them, so both readings are of the same values."""
    try:
        values = [event.payload for event in _batch_payloads.decode(body).events]
        _msgpack.encode(values)  # an integer outside -2^63..2^64-1 raises
    except (msgspec.DecodeError, OverflowError, RecursionError, UnicodeDecodeError):
        return False  # msgspec.ValidationError (a number beyond a double) is a DecodeError
    if len(values) != len(payloads):
        return False
    for raw, value in zip(payloads, values, strict=True):
        if len(raw) > 2 * MAX_DEPTH:
            data = bytes(raw)
            if data.count(b"[") + data.count(b"{") > MAX_DEPTH and _depth(value) > MAX_DEPTH:
                return False
    return True


def encode_payload(value: Any) -> bytes:
    """The JSON encoding of a payload given as a Python value, refusing what is not I-JSON.

    Raises `NotIJson`, or `TypeError` for a value JSON has no form for. A `msgspec.Raw`
    is JSON text already: it is checked as it is. A value is checked without decoding
    what it encodes to: msgspec writes only valid JSON (a `msgspec.Raw` nested inside
    the value is taken as the JSON it claims to be; the daemon checks it), so what is
    left is what JSON can say and I-JSON cannot: depth and the range of integers.
    """
    if isinstance(value, msgspec.Raw):
        data = bytes(value)
        check_json(data)
        return data
    try:
        data = _json.encode(value)
    except UnicodeEncodeError:
        raise NotIJson("a string in the payload is not valid Unicode (a lone surrogate)") from None
    except RecursionError:
        raise NotIJson(f"the payload is nested deeper than {MAX_DEPTH} levels") from None
    # msgspec writes NaN and the infinities as `null`: only then can there be one.
    if b"null" in data and _has_non_finite(msgspec.to_builtins(value)):
        raise NotIJson("the payload has a number that is not finite (NaN or an infinity)")
    if len(data) > 2 * MAX_DEPTH and data.count(b"[") + data.count(b"{") > MAX_DEPTH:
        check_json(data)  # deep, perhaps: measure the nesting of what JSON says
    else:
        try:
            _msgpack.encode(value)
        except OverflowError:
            raise NotIJson("the payload has an integer outside -2^63..2^64-1") from None
        except (TypeError, ValueError):
            check_json(data)  # a type msgpack has no form for: check what JSON says
    return data


def _check_decoded(data: bytes, value: Any) -> None:
    """The rules msgspec's decoder does not apply itself: depth and integer range."""
    # Nesting deeper than 64 takes more than 128 bytes and more than 64 brackets.
    if (
        len(data) > 2 * MAX_DEPTH
        and data.count(b"[") + data.count(b"{") > MAX_DEPTH
        and _depth(value) > MAX_DEPTH
    ):
        raise NotIJson(f"the payload is nested deeper than {MAX_DEPTH} levels")
    try:
        # msgpack holds exactly the integers I-JSON allows, and encoding (in C) is
        # cheaper than looking for long runs of digits first.
        _msgpack.encode(value)
    except OverflowError:
        raise NotIJson("the payload has an integer outside -2^63..2^64-1") from None


def _depth(value: Any) -> int:
    """How many containers deep `value` nests (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        depth += 1
        if depth > MAX_DEPTH:
            return depth
        deepest = max(deepest, depth)
        stack.extend((child, depth) for child in children)
    return deepest


def _has_non_finite(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


__all__ = ["MAX_DEPTH", "NotIJson", "batch_is_ijson", "check_json", "encode_payload"]
