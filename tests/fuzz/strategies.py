"""Hypothesis strategies the fuzz modules share: cursor-ish text and JSON payloads."""

from __future__ import annotations

import json

from hypothesis import strategies as st

from livereplay.protocol.constants import CURSOR_PREFIX, U64_MAX

# Text a URL can carry: everything but lone surrogates, which have no UTF-8 form.
texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=80)
numbers = st.one_of(
    st.integers(0, U64_MAX).map(str),
    st.integers(U64_MAX + 1, 2**80).map(str),
    st.from_regex(r"\A[+\-]?[0-9 _\u0660-\u0669\uff10-\uff19]{0,25}\Z"),
)
parts = st.text("ab:_-é 0+", max_size=8)


@st.composite
def near_miss_cursors(draw: st.DrawFn) -> str:
    """A cursor-shaped string, then a few characters inserted, removed or replaced."""
    prefix = draw(
        st.sampled_from([CURSOR_PREFIX, "lashsc1:", "LASHSC2:", "lashsc2", "", " lashsc2:"])
    )
    text = f"{prefix}{draw(parts)}:{draw(numbers)}:{draw(numbers)}:{draw(parts)}"
    for _ in range(draw(st.integers(0, 3))):
        if not text:
            break
        i = draw(st.integers(0, len(text) - 1))
        edit = draw(st.sampled_from(["insert", "delete", "replace"]))
        char = draw(st.sampled_from(": +-0\n\x00é"))
        if edit == "insert":
            text = text[:i] + char + text[i:]
        elif edit == "delete":
            text = text[:i] + text[i + 1 :]
        else:
            text = text[:i] + char + text[i + 1 :]
    return text


cursor_texts = st.one_of(texts, near_miss_cursors())
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), U64_MAX)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
# I-JSON values (PROTOCOL.md section 2): the payloads the daemon accepts.
valid_payloads = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    # Surrounding whitespace is allowed; non-ASCII text travels as UTF-8.
    json_values.map(lambda v: b" \t" + json.dumps(v, ensure_ascii=False).encode() + b"\n"),
)
